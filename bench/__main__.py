"""`python -m bench [--quick] [--only NAME[,NAME]] [--out DIR] [--full]`: run the scenarios of issue 6
on the local stack and write `bench/results/<date>-<commit>.md|.json` and `bench/results/latest.md`.

--quick   scaled-down scenarios (seconds, not minutes): the smoke test's mode; results go to a
          temporary directory unless --out is given, so quick runs never replace real figures.
--full    measure the naive strategy at every burst size (adds minutes) instead of extrapolating
          the largest from its measured per-grant cost.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import report
from bench.harness import Services, git_commit, log, machine, services, utc_now

SCENARIOS = ("cold_start", "request_overhead", "burst", "revocation", "estate_pass")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Context:
    quick: bool
    full: bool
    work_dir: Path
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _services: Services | None = None

    @property
    def services(self) -> Services:
        """Azurite and the emulator, started on first use and shared by the scenarios of the run."""
        if self._services is None:
            log("starting Azurite and the ARM emulator")
            self._services = self._stack.enter_context(services(self.work_dir / "services"))
        return self._services

    def close(self) -> None:
        self._stack.close()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down scenarios (smoke test)")
    parser.add_argument("--full", action="store_true", help="measure the naive strategy at every size")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios among {', '.join(SCENARIOS)}")
    parser.add_argument(
        "--out", type=Path, help="results directory (default bench/results; quick: a temp dir)"
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"--only: unknown scenario(s) {', '.join(unknown)}; choose among {', '.join(SCENARIOS)}")
    args.scenarios = chosen
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    out_dir: Path = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else RESULTS_DIR)
    commit, dirty = git_commit()
    started = utc_now()
    document: dict[str, Any] = {
        "schema": 1,
        "date": started.isoformat(timespec="seconds"),
        "commit": commit,
        "tree_dirty": dirty,
        "mode": "quick" if args.quick else ("full" if args.full else "standard"),
        "machine": machine(),
        "scenarios": {},
    }
    failures = 0
    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        ctx = Context(quick=args.quick, full=args.full, work_dir=Path(work))
        try:
            for name in args.scenarios:
                log(f"scenario {name}: start")
                clock = time.perf_counter()
                module = importlib.import_module(f"bench.scenarios.{name}")
                try:
                    result = module.run(ctx)
                    result["status"] = "ok"
                except Exception as error:  # one broken scenario must not hide the others' figures
                    failures += 1
                    traceback.print_exc()
                    result = {"status": "failed", "error": f"{type(error).__name__}: {error}"[:2000]}
                result["scenario_seconds"] = round(time.perf_counter() - clock, 1)
                document["scenarios"][name] = result
                log(f"scenario {name}: {result['status']} in {result['scenario_seconds']} s")
        finally:
            ctx.close()
    document["total_seconds"] = round((utc_now() - started).total_seconds(), 1)
    paths = report.write(document, out_dir)
    log(f"wrote {', '.join(str(p) for p in paths)} in {document['total_seconds']} s")
    print(json.dumps({"results": [str(p) for p in paths], "failed_scenarios": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
