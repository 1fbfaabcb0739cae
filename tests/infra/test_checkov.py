"""checkov finds no failed check in infra/, every skip carries its reason, and checkov's own Bicep
parser (pycep-parser 0.5.1, older than ours) reads every file: checkov exits 0 on a file it cannot
parse, so a parse failure would otherwise pass silently."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep

CHECKOV_VENV = Path(os.environ.get("PORTCULLIS_CHECKOV_VENV", bicep.ROOT / ".venv-checkov"))
SKIP_COMMENT = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def _checkov_python() -> Path:
    python = CHECKOV_VENV / "bin" / "python"
    if not (CHECKOV_VENV / "bin" / "checkov").is_file():
        message = f"checkov is not installed in {CHECKOV_VENV}; `make test` (or `make checkov`) installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    _checkov_python()
    completed = subprocess.run(
        [
            str(CHECKOV_VENV / "bin" / "checkov"),
            "--directory",
            str(bicep.INFRA),
            "--output",
            "json",
            "--skip-download",
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if completed.returncode not in (0, 1):  # 1 = failed checks, reported below
        pytest.fail(f"checkov exited {completed.returncode}: {completed.stderr[-2000:]}")
    reports = json.loads(completed.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {report["check_type"]: report for report in reports}
    assert "bicep" in by_type, f"checkov found no Bicep to scan: {sorted(by_type)}"
    return {"reports": reports, "bicep": by_type["bicep"]}


def test_checkov_finds_no_failed_check(checkov_report: dict[str, Any]) -> None:
    failed = [
        f"{check['check_id']} {check['resource']} {check['file_path']}:{check['file_line_range']}"
        f" {check['check_name']}"
        for report in checkov_report["reports"]
        for check in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks (fix, or skip inline with a reason):\n" + "\n".join(failed)


def test_checkov_parsed_every_bicep_file(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["bicep"]["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] >= 20, summary
    assert summary["passed"] > 0, summary


def test_checkovs_parser_reads_every_file() -> None:
    python = _checkov_python()
    script = (
        "import sys\nfrom pathlib import Path\nfrom pycep import BicepParser\nbad = []\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n        BicepParser().parse(file_path=Path(name))\n"
        "    except Exception as error:\n        bad.append(f'{name}: {str(error)[:300]}')\n"
        "print('\\n'.join(bad))\nsys.exit(1 if bad else 0)\n"
    )
    files = [str(path) for path in bicep.bicep_files()]
    completed = subprocess.run(
        [str(python), "-c", script, *files], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, (
        f"checkov's pycep-parser cannot parse:\n{completed.stdout}{completed.stderr}"
    )


def test_every_skip_says_why(checkov_report: dict[str, Any]) -> None:
    unexplained = []
    for path in bicep.bicep_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = SKIP_COMMENT.search(line)
            if match and len((match.group(2) or "").strip()) < 30:
                unexplained.append(f"{path.relative_to(bicep.ROOT)}:{number}: {line.strip()}")
    assert not unexplained, "checkov skips need an inline justification:\n" + "\n".join(unexplained)
    skipped = checkov_report["bicep"]["results"]["skipped_checks"]
    assert skipped, "the inline skips above did not reach checkov"
    assert all(len(check["check_result"].get("suppress_comment", "")) >= 30 for check in skipped)
