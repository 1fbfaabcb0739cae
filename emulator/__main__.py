"""`python -m emulator --port PORT --data-dir DIR [--host 127.0.0.1] [--seed FILE] [--lro-seconds TYPE=S]
[--throttle on|off|reads=250/25,writes=200/10,deletes=200/10]`"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from emulator.admin import seed_file
from emulator.certs import ensure_certificates
from emulator.engine import Engine
from emulator.providers import load_providers
from emulator.server import make_server
from emulator.store import Store
from emulator.throttle import Limit, Throttle, parse_limits

log = logging.getLogger("emulator")


def _duration(text: str) -> tuple[str, float]:
    type_key, _, seconds = text.partition("=")
    try:
        value = float(seconds)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected TYPE=SECONDS, got {text!r}") from error
    if not type_key or value < 0:
        raise argparse.ArgumentTypeError(f"expected TYPE=SECONDS with SECONDS >= 0, got {text!r}")
    return type_key, value


def _throttle(text: str) -> dict[str, Limit] | None:
    try:
        return parse_limits(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description="Azure Resource Manager emulator")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=Path, help="JSON estate applied at start (see README.md)")
    parser.add_argument(
        "--lro-seconds",
        type=_duration,
        action="append",
        default=[],
        metavar="TYPE=SECONDS",
        help="duration of long-running operations, e.g. Microsoft.Network/azureFirewalls=2 or default=0",
    )
    parser.add_argument(
        "--throttle",
        type=_throttle,
        default="on",
        metavar="on|off|reads=SIZE/REFILL,...",
        help="ARM's token buckets per subscription and caller (default on: reads=250/25,writes=200/10,"
        "deletes=200/10, global 15x); `off` disables them; change at run time with PUT /_emulator/throttle",
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=None,
        metavar="N",
        help="items per page of list answers before a nextLink (default 1000)",
    )
    parser.add_argument(
        "--login-endpoint",
        default=None,
        metavar="URL",
        help="the Entra ID (OpenID Connect) authority GET /metadata/endpoints advertises "
        "(default https://login.microsoftonline.com/; localrig passes its local issuer)",
    )
    parser.add_argument(
        "--tenant", default=None, metavar="ID", help="tenant answered when a token carries no `tid`"
    )
    parser.add_argument(
        "--subscription",
        action="append",
        default=None,
        metavar="ID",
        help="a subscription GET /subscriptions lists even without resource groups (repeatable; "
        "default 00000000-0000-0000-0000-0000000000e1)",
    )
    parser.add_argument("--no-persist", action="store_true", help="keep state in memory only")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")

    args.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(None if args.no_persist else args.data_dir / "state.json")
    throttle = Throttle(args.throttle, enabled=args.throttle is not None)
    engine = Engine(store, lro_seconds=dict(args.lro_seconds), throttle=throttle)
    if args.page_size is not None:
        if args.page_size < 1:
            parser.error("--page-size must be >= 1")
        engine.page_size = args.page_size
    if args.login_endpoint:
        engine.login_endpoint = args.login_endpoint.rstrip("/") + "/"
    if args.tenant:
        engine.tenant_id = args.tenant
    if args.subscription:
        engine.default_subscriptions = list(args.subscription)
    providers = load_providers(engine)
    if args.seed:
        count = seed_file(engine, args.seed)
        log.info("emulator.seeded items=%d file=%s", count, args.seed)
    cert, key = ensure_certificates(args.data_dir)
    server = make_server(engine, args.host, args.port, cert, key)
    store.start_writer()
    engine.start_ticker()

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    log.info(
        "emulator.serving url=https://%s:%d providers=%s throttle=%s",
        args.host,
        args.port,
        ",".join(providers),
        throttle.state()["limits"] if throttle.enabled else "off",
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.stop()
        log.info("emulator.stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
