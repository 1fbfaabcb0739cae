"""`python -m localrig up`: run Azurite, the ARM emulator, the OpenID Connect issuer and the function
app until Ctrl-C, with the sample estate seeded (unless `--no-seed` or PORTCULLIS_LOCAL_SEED=0).
PORTCULLIS_LOCAL_AUTH=jwt (default) or headers says how the app authenticates."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from azure.core.exceptions import HttpResponseError

from localrig.estates.seed import seed_sample, seed_wanted
from localrig.processes import ProcessFailedToStartError
from localrig.stack import LocalAuth, Stack, local_auth, start_stack

# How often the foreground loop checks that every child is still alive.
WATCH_INTERVAL_SECONDS = 0.5


def _ports(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(part.strip().isdigit() for part in parts):
        raise argparse.ArgumentTypeError("expected BLOB,QUEUE,TABLE ports, e.g. 10000,10001,10002")
    blob, queue, table = (int(part) for part in parts)
    return blob, queue, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localrig", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run the local stack in the foreground")
    up.add_argument("--host-port", type=int, default=7071)
    up.add_argument("--emulator-port", type=int, default=8443)
    up.add_argument("--issuer-port", type=int, default=8444, help="the OpenID Connect issuer for az login")
    up.add_argument("--azurite-ports", type=_ports, default=(10000, 10001, 10002))
    up.add_argument("--data-dir", type=Path, default=Path(".localrig"))
    up.add_argument("--no-seed", action="store_true", help="do not seed the sample estate")
    args = parser.parse_args(argv)
    try:
        auth = local_auth()
        seed = seed_wanted(args.no_seed)
    except ValueError as error:
        print(f"local stack not started: {error}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"starting the local stack in {args.data_dir.resolve()} (sign-in: {auth}) ...", flush=True)
    try:
        stack = start_stack(
            args.data_dir,
            host_port=args.host_port,
            emulator_port=args.emulator_port,
            issuer_port=args.issuer_port,
            azurite_ports=args.azurite_ports,
            auth=auth,
        )
    except (ProcessFailedToStartError, FileNotFoundError, OSError) as error:
        print(f"local stack failed to start: {error}", file=sys.stderr)
        return 1
    with stack:
        print(stack.describe(), flush=True)
        if seed and not _seed(stack):
            return 1
        if auth is LocalAuth.JWT:
            print("The portcullis CLI against this stack (paste these two lines):", flush=True)
            print(stack.cli_configure_line(), flush=True)
            print(stack.cli_login_line(), flush=True)
        print(f"The web page: {stack.page_url}", flush=True)
        print("Local stack is up. Press Ctrl-C to stop.", flush=True)
        while not stop.wait(WATCH_INTERVAL_SECONDS):
            dead = stack.dead_process()
            if dead is not None:
                print(
                    f"{dead.name} exited with code {dead.popen.returncode}; stopping the stack. "
                    f"Last log lines ({dead.log_path}):\n{dead.tail()}",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        print("stopping the local stack ...", flush=True)
    return 0


def _seed(stack: Stack) -> bool:
    """Seed the sample estate and say what it holds; False (after saying why) if it was refused."""
    try:
        report = seed_sample(stack)
    except (AssertionError, RuntimeError, OSError, HttpResponseError) as error:
        print(f"seeding the sample estate failed: {error} (--no-seed skips it)", file=sys.stderr, flush=True)
        return False
    for line in report.lines():
        print(line, flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
