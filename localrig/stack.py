"""The whole local stack: Azurite, the ARM emulator, the OpenID Connect issuer and the Functions app
on devhost.

`start_stack()` is the one way to run it (for `make up`, `make demo` and end-to-end tests); the
environment the app gets comes from `host_environment()` so every caller configures it alike.

How the app learns who calls (`LocalAuth`): by default (`jwt`) it validates bearer tokens from the
local issuer itself (PORTCULLIS_JWT_*), so the identity path a laptop exercises is the real token
validation and principal headers a client sends are ignored; `headers` is today's shortcut, Easy
Auth counted as on (WEBSITE_AUTH_ENABLED) and the X-MS-CLIENT-PRINCIPAL* headers a local client sends
trusted, for tools and scripts that send them. `Stack.headers_for(user)` signs a dev user in either way.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from localrig.azurite import Azurite, start_azurite
from localrig.devusers import ALICE, APP_AUDIENCE, DEV_PASSWORD, PUBLIC_CLIENT_ID, DevUser
from localrig.emulator import Emulator, start_emulator
from localrig.oidc import OidcIssuer, az_login_lines, start_issuer
from localrig.processes import PROJECT_ROOT, ManagedProcess, free_port, free_ports, port_is_open
from localrig.webhook_sink import WebhookSink, start_sink
from shared.identity import easy_auth_header

EMULATOR_ENTRY = PROJECT_ROOT / "emulator" / "__main__.py"
# `PORTCULLIS_LOCAL_AUTH=headers make up` keeps the Easy Auth stand-in; the default is `jwt`.
LOCAL_AUTH_VARIABLE = "PORTCULLIS_LOCAL_AUTH"
# A cached token is fetched again when it has less than this left (a request in flight must not
# carry a token that expires on the way).
TOKEN_RENEW_MARGIN_SECONDS = 300


class LocalAuth(StrEnum):
    JWT = "jwt"  # the app validates the local issuer's bearer tokens (PORTCULLIS_JWT_*)
    HEADERS = "headers"  # Easy Auth counted as on: X-MS-CLIENT-PRINCIPAL* headers trusted


def local_auth(env: Mapping[str, str] | None = None) -> LocalAuth:
    """The mode PORTCULLIS_LOCAL_AUTH asks for (unset or empty: jwt); ValueError naming the variable
    and the choices for anything else."""
    value = (os.environ if env is None else env).get(LOCAL_AUTH_VARIABLE, "").strip().lower()
    if not value:
        return LocalAuth.JWT
    try:
        return LocalAuth(value)
    except ValueError:
        choices = " or ".join(mode.value for mode in LocalAuth)
        raise ValueError(f"{LOCAL_AUTH_VARIABLE}={value!r} is not a mode: use {choices}") from None


def host_environment(
    azurite: Azurite, emulator: Emulator, issuer: OidcIssuer | None = None, auth: LocalAuth = LocalAuth.JWT
) -> dict[str, str]:
    """App settings for the function app against the local stack (see shared/settings.py). JWT mode
    needs the issuer."""
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "PORTCULLIS_ARM_ENDPOINT": emulator.base_url,
        "PORTCULLIS_ARM_CA_BUNDLE": str(emulator.ca_file),
        "PORTCULLIS_ARM_CREDENTIAL": "static-token",
        # The emulator finishes long-running operations at once; do not wait between polls.
        "PORTCULLIS_ARM_POLLING_INTERVAL": "0",
        # Queue trigger bindings name their queue through these app settings (%NAME%).
        "PORTCULLIS_REQUESTS_QUEUE": "jit-requests",
        "PORTCULLIS_CONVERGE_QUEUE": "jit-converge",
        "PORTCULLIS_EVENTS_QUEUE": "jit-events",
    }

    if auth is LocalAuth.HEADERS:
        # devhost passes X-MS-CLIENT-PRINCIPAL* through: it stands in for App Service Easy Auth.
        env["WEBSITE_AUTH_ENABLED"] = "true"
        return env
    if issuer is None:
        raise ValueError("JWT mode needs the OpenID Connect issuer: start it first (start_arm)")
    env.update(
        {
            "PORTCULLIS_JWT_ISSUER": issuer.issuer,
            "PORTCULLIS_JWT_AUDIENCE": APP_AUDIENCE,
            "PORTCULLIS_JWT_JWKS_URI": issuer.jwks_uri,
            # The issuer's certificate comes from the emulator's CA.
            "PORTCULLIS_JWT_CA_BUNDLE": str(issuer.ca_file),
        }
    )
    return env


def notification_environment(sink: WebhookSink) -> dict[str, str]:
    """Point the app's notifications at the local sink: one webhook and the Event Grid stand-in."""
    return {
        "PORTCULLIS_WEBHOOK_URLS": sink.webhook_url,
        "PORTCULLIS_WEBHOOK_SECRET": sink.secret,
        "PORTCULLIS_EVENTGRID_TOPIC_ENDPOINT": sink.eventgrid_endpoint,
    }


def password_grant(issuer: OidcIssuer, user: DevUser) -> dict[str, object]:
    """A dev user's token for the app from the issuer's password grant (what `portcullis login
    --dev-user` does): the issuer's JSON answer; RuntimeError with its error_description if refused."""
    form = urllib.parse.urlencode(
        {
            "grant_type": "password",
            "client_id": PUBLIC_CLIENT_ID,
            "username": user.username,
            "password": DEV_PASSWORD,
            "scope": f"{APP_AUDIENCE}/.default",
        }
    ).encode()
    context = ssl.create_default_context(cafile=str(issuer.ca_file))
    request = urllib.request.Request(issuer.token_endpoint, data=form, method="POST")  # noqa: S310 - https
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:  # noqa: S310
            body: dict[str, object] = json.load(answer)
    except urllib.error.HTTPError as error:
        refusal = json.load(error)
        raise RuntimeError(f"the issuer refused {user.name}: {refusal.get('error_description')}") from None
    return body


def _host_ready(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/admin/host/status"
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(json.load(response).get("state") == "Running")


def easy_auth_args(issuer: OidcIssuer, auth: LocalAuth) -> list[str]:
    """devhost's Easy Auth stand-in (devhost/easyauth.py) for the web page: browsers sign in at
    /.auth/login/aad with the issuer's dev-user picker (the public client, authorization code + PKCE);
    API calls with the session cookie reach the app as a bearer token (JWT mode, so the app's own
    validation runs) or as X-MS-CLIENT-PRINCIPAL* headers (headers mode), as Easy Auth sends them."""
    return [
        "--easy-auth-authority",
        issuer.authority,
        "--easy-auth-client-id",
        PUBLIC_CLIENT_ID,
        "--easy-auth-scope",
        f"openid profile offline_access {APP_AUDIENCE}/.default",
        "--easy-auth-ca-bundle",
        str(issuer.ca_file),
        "--easy-auth-forward",
        "bearer" if auth is LocalAuth.JWT else "headers",
    ]


def start_host(
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    app: str = "function_app",
    app_dir: Path = PROJECT_ROOT,
    host_json: Path | None = None,
    settings: Path | None = None,
    log_path: Path,
    timeout: float = 60.0,
    extra_args: list[str] | None = None,
) -> tuple[ManagedProcess, int]:
    """Run `python -m devhost` for `app`; returns once /admin/host/status says Running."""
    port = port or free_port()
    if port_is_open(port):
        raise OSError(f"port {port} is already in use; choose another for the Functions host")
    argv = [sys.executable, "-m", "devhost", "--app", app, "--app-dir", str(app_dir)]
    argv += ["--port", str(port)]
    if host_json is not None:
        argv += ["--host-json", str(host_json)]
    if settings is not None:
        argv += ["--settings", str(settings)]
    argv += extra_args or []
    process = ManagedProcess("functions-host", argv, log_path=log_path, env=dict(env or {}), cwd=PROJECT_ROOT)
    process.wait_ready(lambda: _host_ready(port), timeout=timeout)
    return process, port


def start_arm(
    data_dir: Path,
    *,
    emulator_port: int | None = None,
    issuer_port: int | None = None,
    emulator_args: list[str] | None = None,
    emulator_log: Path | None = None,
    issuer_log: Path | None = None,
) -> tuple[Emulator, OidcIssuer]:
    """The ARM emulator (in DIR/emulator) and the OpenID Connect issuer `az login` uses (in DIR/oidc,
    TLS from the emulator's CA); the emulator's /metadata/endpoints names the issuer as its login
    endpoint. The emulator is stopped again if the issuer fails to start."""
    # Both picked before either listens, so they differ.
    spare = iter(free_ports(2))
    issuer_port, emulator_port = issuer_port or next(spare), emulator_port or next(spare)
    args = ["--login-endpoint", f"https://127.0.0.1:{issuer_port}/", *(emulator_args or [])]
    emulator = start_emulator(
        data_dir / "emulator", port=emulator_port, extra_args=args, log_path=emulator_log
    )
    try:
        issuer = start_issuer(data_dir / "oidc", data_dir / "emulator", port=issuer_port, log_path=issuer_log)
    except BaseException:
        emulator.stop()
        raise
    return emulator, issuer


@dataclass
class Stack:
    data_dir: Path
    azurite: Azurite
    emulator: Emulator
    host: ManagedProcess
    host_port: int
    env: dict[str, str] = field(default_factory=dict)
    issuer: OidcIssuer | None = None
    auth: LocalAuth = LocalAuth.JWT
    # Receives the app's notifications (`webhook_sink.print_received()`, GET {url}/received).
    webhook_sink: WebhookSink | None = None
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict, init=False, repr=False)
    _tokens_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def host_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def api_url(self) -> str:
        return f"{self.host_url}/api"

    @property
    def page_url(self) -> str:
        """The self-service web page (GET /api/ui/; sign-in through devhost's Easy Auth stand-in)."""
        return f"{self.api_url}/ui/"

    def run_timer_now(self, function: str) -> None:
        """Run one of the app's timer functions once, now, as the host's admin API does (devhost's
        `POST /admin/functions/{name}`: it answers 202 and runs in the background)."""
        url = f"{self.host_url}/admin/functions/{function}"
        request = urllib.request.Request(url, b"{}", method="POST")  # noqa: S310 - the local host
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            if response.status != 202:
                raise RuntimeError(f"the host answered {response.status} to running {function} now")

    def headers_for(self, user: DevUser) -> dict[str, str]:
        """What a client sends to be `user`: in JWT mode `Authorization: Bearer` with a token from
        the issuer's password grant (cached per user until TOKEN_RENEW_MARGIN_SECONDS before it
        expires), in headers mode the principal headers Easy Auth would set."""
        if self.auth is LocalAuth.HEADERS:
            return easy_auth_header(user.object_id, user.username)
        if self.issuer is None:
            raise RuntimeError("this stack runs in JWT mode without an OpenID Connect issuer")
        with self._tokens_lock:
            token, expires_at = self._tokens.get(user.name, ("", 0.0))
            if time.time() > expires_at - TOKEN_RENEW_MARGIN_SECONDS:
                answer = password_grant(self.issuer, user)
                token = str(answer["access_token"])
                expires_at = time.time() + float(str(answer["expires_in"]))
                self._tokens[user.name] = (token, expires_at)
        return {"Authorization": f"Bearer {token}"}

    def cli_configure_line(self) -> str:
        """The `portcullis configure` line that points the CLI at this stack (printed by `make up`)."""
        if self.issuer is None:
            raise RuntimeError("the CLI signs in with the OpenID Connect issuer, and this stack has none")
        return (
            f"portcullis configure --endpoint {self.host_url} --audience {APP_AUDIENCE} "
            f"--authority {self.issuer.authority} --ca-bundle {self.issuer.ca_file.resolve()}"
        )

    @staticmethod
    def cli_login_line(user: DevUser = ALICE) -> str:
        return f"portcullis login --dev-user {user.name}"

    def processes(self) -> list[ManagedProcess]:
        issuer = [self.issuer.process] if self.issuer is not None else []
        return [self.host, *issuer, self.emulator.process, self.azurite.process]

    def dead_process(self) -> ManagedProcess | None:
        """The first child that has exited, if any."""
        return next((process for process in self.processes() if not process.running()), None)

    def stop(self) -> None:
        for process in self.processes():
            process.stop()
        if self.webhook_sink is not None:
            self.webhook_sink.stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def describe(self) -> str:
        lines = [
            f"Functions host  {self.api_url}   (status: {self.host_url}/admin/host/status)",
            f"Web page        {self.page_url}   (sign in as a dev user: {self.host_url}/.auth/login/aad)",
            f"ARM emulator    {self.emulator.base_url}",
            f"Emulator CA     {self.emulator.ca_file}",
            f"Azurite         {self.azurite.connection_string}",
            f"Logs            {self.data_dir}/*.log",
            *([f"Webhook sink    {self.webhook_sink.url}/received"] if self.webhook_sink else []),
            "Environment given to the app:",
        ]
        lines += [f"  {name}={value}" for name, value in self.env.items()]
        if self.issuer is not None:
            lines += [
                f"OpenID issuer   {self.issuer.authority}   (for az login)",
                "Azure CLI against the local stack (paste into a shell; `make az` installs it):",
            ]
            lines += [f"  {line}" for line in az_login_lines(self.emulator.base_url, self.issuer)]
        if self.auth is LocalAuth.JWT:
            lines.append(
                f"Sign-in         JWT: the app validates the issuer's tokens (audience {APP_AUDIENCE}); "
                f"dev users alice, bob, admin, eve, password {DEV_PASSWORD}"
            )
        else:
            lines.append(
                "Sign-in         headers: Easy Auth stand-in, X-MS-CLIENT-PRINCIPAL* headers trusted "
                f"({LOCAL_AUTH_VARIABLE}=headers)"
            )
        return "\n".join(lines)


def start_stack(
    data_dir: Path,
    *,
    host_port: int | None = None,
    emulator_port: int | None = None,
    issuer_port: int | None = None,
    azurite_ports: tuple[int, int, int] | None = None,
    app: str = "function_app",
    extra_env: Mapping[str, str] | None = None,
    emulator_args: list[str] | None = None,
    auth: LocalAuth = LocalAuth.JWT,
) -> Stack:
    """Start Azurite, the emulator, the issuer and the app on devhost; use as
    `with start_stack(dir) as s:`. `auth` says how the app authenticates callers (LocalAuth).

    Children started before a failure are stopped before the error propagates.
    """
    if not EMULATOR_ENTRY.exists():
        raise FileNotFoundError(
            f"{EMULATOR_ENTRY} is missing: the ARM emulator (`python -m emulator`) is not in this tree"
        )
    data_dir = data_dir.resolve()
    started: list[ManagedProcess] = []
    sink = start_sink()
    try:
        blob, queue, table = azurite_ports or (None, None, None)
        azurite = start_azurite(
            data_dir / "azurite",
            blob_port=blob,
            queue_port=queue,
            table_port=table,
            log_path=data_dir / "azurite.log",
        )
        started.append(azurite.process)
        emulator, issuer = start_arm(
            data_dir,
            emulator_port=emulator_port,
            issuer_port=issuer_port,
            emulator_args=emulator_args,
            emulator_log=data_dir / "emulator.log",
            issuer_log=data_dir / "oidc.log",
        )
        started += [emulator.process, issuer.process]
        env = {
            **host_environment(azurite, emulator, issuer, auth),
            **notification_environment(sink),
            **(extra_env or {}),
        }
        host, port = start_host(
            port=host_port,
            env=env,
            app=app,
            log_path=data_dir / "functions-host.log",
            extra_args=easy_auth_args(issuer, auth),
        )
    except BaseException:
        for process in reversed(started):
            process.stop()
        sink.stop()
        raise
    return Stack(data_dir, azurite, emulator, host, port, env, issuer, auth, webhook_sink=sink)
