"""Signing in: a bearer token for the app's audience.

- `login --dev-user NAME` (the local stack): one form POST of OAuth's resource owner password grant
  to the issuer's token endpoint (found by OpenID discovery at the authority). MSAL cannot be used
  there: its ROPC first asks a user-realm endpoint that only Microsoft's hosts serve. The answer's
  access and refresh tokens are cached in `token.json`; an expired access token is renewed with the
  refresh token.
- `login` in Azure: azure-identity. `AzureCliCredential` when `az login` was done, else the
  interactive browser (or `--use-device-code`), whose authentication record is kept so later commands
  sign in silently from azure-identity's persistent token cache.
- `PORTCULLIS_TOKEN`: a token a pipeline already has, used as it is.
"""

from __future__ import annotations

import os
import time
from typing import Any

from portcullis_cli import config as cfg

RENEW_MARGIN_SECONDS = 120  # a token with less left is renewed before a call
DEV_PASSWORD_VARIABLE = "PORTCULLIS_DEV_PASSWORD"  # noqa: S105 - a variable name
DEFAULT_DEV_PASSWORD = "portcullis-dev"  # noqa: S105 - the local stack's dev users' (localrig/devusers.py)
CACHE_NAME = "portcullis-cli"
# Entra ID's sign-in hosts (public and sovereign clouds): instance discovery works only for these.
MICROSOFT_AUTHORITY_HOSTS = (
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
)


class NotSignedInError(Exception):
    """No usable sign-in: the message says what to run."""


class SignInRefusedError(Exception):
    """The issuer or Entra ID refused: the message carries its `error_description`."""


def token_path() -> Any:
    return cfg.config_dir() / "token.json"


def _http(config: cfg.Config, method: str, url: str, **kwargs: Any) -> Any:
    """One call to the authority. `verify` is passed on each call: requests lets REQUESTS_CA_BUNDLE
    override a session's own."""
    import requests

    try:
        return requests.request(method, url, verify=config.verify, timeout=30, **kwargs)
    except requests.RequestException as error:
        raise SignInRefusedError(f"{url} cannot be reached: {error}") from None


def _token_endpoint(config: cfg.Config) -> str:
    if not config.authority:
        raise LookupError(
            "no authority: run `portcullis configure --authority https://.../<tenant>` "
            "or set PORTCULLIS_AUTHORITY"
        )
    authority = config.authority.rstrip("/")
    answer = _http(config, "GET", f"{authority}/v2.0/.well-known/openid-configuration")
    if answer.status_code != 200:
        raise SignInRefusedError(f"{authority} answered {answer.status_code} to OpenID discovery")
    return str(answer.json()["token_endpoint"])


def _token_request(config: cfg.Config, endpoint: str, form: dict[str, str]) -> dict[str, Any]:
    answer = _http(config, "POST", endpoint, data=form)
    body: dict[str, Any] = answer.json() if answer.content else {}
    if answer.status_code != 200:
        reason = body.get("error_description") or body.get("error") or answer.text[:300]
        raise SignInRefusedError(f"sign-in refused: {reason}")
    return body


def login_dev_user(config: cfg.Config, name: str, password: str | None = None) -> dict[str, Any]:
    """Sign a dev user of the local stack in; returns what is cached (without the tokens' text)."""
    endpoint = _token_endpoint(config)
    form = {
        "grant_type": "password",
        "client_id": config.effective_client_id,
        "username": name,
        "password": password or os.environ.get(DEV_PASSWORD_VARIABLE) or DEFAULT_DEV_PASSWORD,
        "scope": f"{config.scope} openid profile offline_access",
    }
    answer = _token_request(config, endpoint, form)
    cached = {
        "kind": "dev-user",
        "user": name,
        "token_endpoint": endpoint,
        "endpoint": config.api_url,
        "access_token": answer["access_token"],
        "refresh_token": answer.get("refresh_token"),
        "expires_at": time.time() + float(answer.get("expires_in", 3600)),
    }
    cfg.write_json(token_path(), cached, private=True)
    return cached


def _persistent_cache() -> Any:
    from azure.identity import TokenCachePersistenceOptions

    return TokenCachePersistenceOptions(name=CACHE_NAME, allow_unencrypted_storage=True)


def _tenant(config: cfg.Config) -> tuple[str | None, str | None]:
    """(authority host, tenant) from `https://login.microsoftonline.com/<tenant>`."""
    if not config.authority:
        return None, None
    from urllib.parse import urlsplit

    parts = urlsplit(config.authority)
    tenant = parts.path.strip("/").split("/")[0] or None
    return parts.netloc or None, tenant


def _identity_options(config: cfg.Config) -> dict[str, Any]:
    """What azure-identity's interactive credentials need for this authority: Entra ID's host and
    tenant, the persistent token cache; for an authority that is not Microsoft's (the local issuer)
    no instance discovery, and the configured CA file."""
    host, tenant = _tenant(config)
    options: dict[str, Any] = {
        "client_id": config.effective_client_id,
        "cache_persistence_options": _persistent_cache(),
    }
    if tenant:
        options["tenant_id"] = tenant
    if host:
        options["authority"] = host
        if not host.lower().split(":")[0].endswith(MICROSOFT_AUTHORITY_HOSTS):
            options["disable_instance_discovery"] = True
    if config.ca_bundle:
        options["connection_verify"] = config.ca_bundle
    return options


def login_azure(
    config: cfg.Config, *, use_device_code: bool = False, browser: bool = False
) -> dict[str, Any]:
    """Entra ID through azure-identity: the Azure CLI's sign-in when there is one (unless a browser or
    device code is asked for), else interactively. Returns what is cached."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import AzureCliCredential, DeviceCodeCredential, InteractiveBrowserCredential

    _, tenant = _tenant(config)
    if not (use_device_code or browser):
        try:
            AzureCliCredential(tenant_id=tenant or "").get_token(config.scope)
        except ClientAuthenticationError:
            pass  # no `az login` (or not for this tenant): sign in interactively
        else:
            cached = {"kind": "azure-cli", "tenant": tenant, "endpoint": config.api_url}
            cfg.write_json(token_path(), cached, private=True)
            return cached
    common = _identity_options(config)
    credential: Any = (
        DeviceCodeCredential(**common) if use_device_code else InteractiveBrowserCredential(**common)
    )
    try:
        record = credential.authenticate(scopes=[config.scope])
    except ClientAuthenticationError as error:
        raise SignInRefusedError(f"sign-in refused: {error.message}") from None
    cached = {
        "kind": "device-code" if use_device_code else "browser",
        "tenant": tenant,
        "endpoint": config.api_url,
        "record": record.serialize(),
    }
    cfg.write_json(token_path(), cached, private=True)
    return cached


def logout() -> bool:
    """Forget the cached sign-in; True if there was one."""
    path = token_path()
    if path.exists():
        path.unlink()
        return True
    return False


def bearer_token(config: cfg.Config) -> str:
    """A token for the app, renewed when needed; NotSignedInError when there is no sign-in to use."""
    if os.environ.get(cfg.TOKEN_VARIABLE):
        return os.environ[cfg.TOKEN_VARIABLE]
    cached = cfg.read_json(token_path())
    kind = cached.get("kind")
    if not kind:
        raise NotSignedInError(
            "not signed in: run `portcullis login` (locally `portcullis login --dev-user NAME`)"
        )
    if kind == "dev-user":
        return _dev_user_token(config, cached)
    return _azure_token(config, cached)


def _dev_user_token(config: cfg.Config, cached: dict[str, Any]) -> str:
    if time.time() < float(cached.get("expires_at", 0)) - RENEW_MARGIN_SECONDS:
        return str(cached["access_token"])
    if not cached.get("refresh_token"):
        raise NotSignedInError(
            f"the sign-in of {cached.get('user')} has expired: run `portcullis login` again"
        )
    form = {
        "grant_type": "refresh_token",
        "client_id": config.effective_client_id,
        "refresh_token": str(cached["refresh_token"]),
        "scope": f"{config.scope} openid profile offline_access",
    }
    try:
        answer = _token_request(config, str(cached["token_endpoint"]), form)
    except SignInRefusedError as refusal:
        raise NotSignedInError(f"{refusal}: run `portcullis login` again") from None
    cached.update(
        access_token=answer["access_token"],
        refresh_token=answer.get("refresh_token") or cached["refresh_token"],
        expires_at=time.time() + float(answer.get("expires_in", 3600)),
    )
    cfg.write_json(token_path(), cached, private=True)
    return str(cached["access_token"])


def _azure_token(config: cfg.Config, cached: dict[str, Any]) -> str:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import (
        AuthenticationRecord,
        AzureCliCredential,
        DeviceCodeCredential,
        InteractiveBrowserCredential,
    )

    credential: Any
    if cached["kind"] == "azure-cli":
        credential = AzureCliCredential(tenant_id=cached.get("tenant") or "")
    else:
        kind = DeviceCodeCredential if cached["kind"] == "device-code" else InteractiveBrowserCredential
        # The authentication record names the authority and tenant; the rest is as at sign-in.
        options = {
            key: value
            for key, value in _identity_options(config).items()
            if key not in ("authority", "tenant_id")
        }
        credential = kind(
            authentication_record=AuthenticationRecord.deserialize(cached["record"]),
            disable_automatic_authentication=True,
            **options,
        )
    try:
        return str(credential.get_token(config.scope).token)
    except ClientAuthenticationError as error:
        raise NotSignedInError(
            f"sign-in expired or refused ({error.message}): run `portcullis login` again"
        ) from None
