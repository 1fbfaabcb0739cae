"""`python -m devhost [--app function_app] [--port 7071] [--settings ...] [--host-json ...]`."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devhost.config import ConfigError, apply_local_settings, local_http_port
from devhost.easyauth import FORWARD_MODES, EasyAuthOptions
from devhost.functions import IndexingError
from devhost.host import Host, HostOptions
from devhost.logs import configure_logging, log_event

DEFAULT_PORT = 7071
SIGNAL_CHECK_SECONDS = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--app", default="function_app", help="module[:attribute] of the app")
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(), help="put on sys.path")
    parser.add_argument("--port", type=int, default=None, help="default: Host.LocalHttpPort or 7071")
    parser.add_argument("--settings", type=Path, default=None, help="local.settings.json")
    parser.add_argument("--host-json", type=Path, default=None, help="host.json")
    parser.add_argument("--stop-grace", type=float, default=10.0, help="seconds for in-flight work")
    easy = parser.add_argument_group(
        "local Easy Auth stand-in (devhost/easyauth.py; off unless an authority is given)"
    )
    easy.add_argument(
        "--easy-auth-authority",
        default=None,
        help="OpenID Connect authority, e.g. https://127.0.0.1:8444/<tenant>",
    )
    easy.add_argument(
        "--easy-auth-client-id", default=None, help="the public client the browser signs in with"
    )
    easy.add_argument("--easy-auth-scope", default="openid profile offline_access", help="scopes asked for")
    easy.add_argument("--easy-auth-ca-bundle", default=None, help="CA file for the issuer's TLS")
    easy.add_argument(
        "--easy-auth-forward",
        choices=FORWARD_MODES,
        default="bearer",
        help="bearer: send the session's access token; headers: X-MS-CLIENT-PRINCIPAL*",
    )
    args = parser.parse_args(argv)
    configure_logging()
    faulthandler.register(signal.SIGUSR1)
    app_dir = args.app_dir.resolve()
    settings = args.settings or app_dir / "local.settings.json"
    host_json = args.host_json or app_dir / "host.json"
    try:
        if settings.exists():
            skipped = apply_local_settings(settings, os.environ)
            for name in skipped:
                log_event("settings.skipped", setting=name, reason="already set in environment")
        elif args.settings is not None:
            raise ConfigError(f"{settings}: no such settings file")
        if not host_json.exists():
            if args.host_json is not None:
                raise ConfigError(f"{host_json}: no such host.json")
            log_event("host.json_missing", level=30, path=str(host_json), using="defaults")
        port = args.port or local_http_port(settings) or DEFAULT_PORT
        easy_auth = None
        if args.easy_auth_authority:
            if not args.easy_auth_client_id:
                raise ConfigError("--easy-auth-authority needs --easy-auth-client-id")
            easy_auth = EasyAuthOptions(
                args.easy_auth_authority,
                args.easy_auth_client_id,
                args.easy_auth_scope,
                args.easy_auth_ca_bundle,
                args.easy_auth_forward,
            )
        host = Host(HostOptions(args.app, app_dir, port, host_json, easy_auth))
        host.start()
    except (ConfigError, IndexingError, ImportError, OSError) as error:
        log_event("host.start_failed", level=50, error=f"{type(error).__name__}: {error}")
        return 1
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log_event("host.signal", signal=signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # Wake up now and then: the kernel may deliver the signal to another thread, and Python runs
    # handlers only when the main thread gets to run bytecode, which a blocking wait never does.
    while not stop_requested.wait(SIGNAL_CHECK_SECONDS):
        pass
    if not host.stop(grace=args.stop_grace):
        # Invocations still running after the grace period are abandoned, as the host does:
        # skip interpreter shutdown, which would wait for their threads.
        logging.shutdown()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
