"""CLI cold start (issue 14): wall time of `portcullis --help` as a person types it, a fresh process
of the installed console script each time (interpreter start, imports, argparse, output), against
the target of 0.5 s; and which heavy modules `--help` loads (none should: the HTTP client,
azure-identity and rich are imported by the commands that use them)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import log, summary

TARGET_SECONDS = 0.5
HEAVY = ("requests", "urllib3", "azure.identity", "azure.core", "msal", "cryptography", "rich")

_PROBE = r"""
import contextlib, io, json, sys
from portcullis_cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["--help"])
    except SystemExit:
        pass
heavy = %r
print(json.dumps({"modules": len(sys.modules), "loaded_heavy": [m for m in heavy if m in sys.modules]}))
"""


def console_script() -> Path:
    return Path(sys.executable).parent / "portcullis"


def _wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return time.perf_counter() - started


def run(ctx: Any) -> dict[str, Any]:
    script = console_script()
    if not script.exists():
        raise FileNotFoundError(f"{script} is missing: `.venv/bin/pip install -e ./cli` (make venv)")
    repeats = 5 if ctx.quick else 20
    _wall([str(script), "--help"])  # compile .pyc once, as an installed package ships them
    help_seconds = [_wall([str(script), "--help"]) for _ in range(repeats)]
    bare_seconds = [_wall([sys.executable, "-c", "pass"]) for _ in range(repeats)]
    probe = json.loads(
        subprocess.run(
            [sys.executable, "-c", _PROBE % (HEAVY,)], check=True, capture_output=True, text=True, timeout=60
        ).stdout
    )
    help_summary = summary(help_seconds)
    log(f"cli cold start: portcullis --help p50 {help_summary['p50']:.3f} s, max {help_summary['max']:.3f} s")
    return {
        "repeats": repeats,
        "command": f"{script} --help",
        "help_seconds": help_summary,
        "interpreter_seconds": summary(bare_seconds),
        "target_seconds": TARGET_SECONDS,
        "meets_target": help_summary["max"] < TARGET_SECONDS,
        "modules_loaded": probe["modules"],
        "heavy_modules_loaded_on_help": probe["loaded_heavy"],
    }
