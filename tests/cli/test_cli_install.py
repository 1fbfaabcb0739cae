"""Installing the CLI from the repository into a fresh virtualenv brings none of the function app's
dependencies: no azure-functions, no azure-mgmt-* (issue 14). pip resolves `./cli` from PyPI with
`--dry-run --report`, so nothing is installed; skipped when PyPI cannot be reached."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import venv
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "cli"


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.mark.timeout(300)
def test_a_fresh_virtualenv_installing_the_cli_gets_no_function_app_package(tmp_path: Path) -> None:
    if not _pypi_reachable():
        pytest.skip("PyPI (pypi.org:443) cannot be reached: the dependency resolution needs it")
    source = tmp_path / "cli"  # a copy: the build must not leave files in the tree
    shutil.copytree(CLI, source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    report = tmp_path / "report.json"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--dry-run",
         "--report", str(report), str(source)],
        check=True, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"portcullis-cli", "azure-identity", "requests", "rich"} <= names
    app_only = sorted(
        n for n in names if n == "azure-functions" or n.startswith(("azure-mgmt", "azure-functions"))
    )
    assert app_only == [], f"the CLI would install the app's packages: {app_only}"
