"""`python -m localrig up` (what `make up` runs): JWT mode by default, ending with the two lines that
point the `portcullis` CLI at the stack, each on a line of its own; `PORTCULLIS_LOCAL_AUTH` picks the
mode and anything but jwt|headers is refused before anything starts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from localrig.devusers import APP_AUDIENCE
from localrig.oidc import TENANT_ID
from localrig.processes import PROJECT_ROOT, free_port


def run_up(data_dir: Path, mode: str | None) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if key != "PORTCULLIS_LOCAL_AUTH"}
    if mode is not None:
        env["PORTCULLIS_LOCAL_AUTH"] = mode
    ports = [free_port() for _ in range(3)]
    argv = [sys.executable, "-m", "localrig", "up", "--data-dir", str(data_dir)]
    argv += ["--host-port", str(free_port()), "--emulator-port", str(free_port())]
    argv += ["--issuer-port", str(free_port()), "--azurite-ports", ",".join(map(str, ports))]
    return subprocess.Popen(
        argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def read_until_up(process: subprocess.Popen[str], timeout: float = 120) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Local stack is up"):
            return lines
    errors = process.stderr.read() if process.stderr else ""
    raise AssertionError(f"the stack did not come up: {lines}\n{errors}")


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_up_prints_the_cli_lines_in_jwt_mode(tmp_path: Path) -> None:
    process = run_up(tmp_path / "rig", None)
    try:
        lines = read_until_up(process)
    finally:
        stop(process)
    assert any("sign-in: jwt" in line for line in lines)
    configure = [line for line in lines if line.startswith("portcullis configure ")]
    assert len(configure) == 1, lines
    match = re.fullmatch(
        r"portcullis configure --endpoint (http://127\.0\.0\.1:\d+) --audience (\S+) "
        r"--authority (https://127\.0\.0\.1:\d+/\S+) --ca-bundle (/\S+)",
        configure[0],
    )
    assert match, configure[0]
    assert match.group(2) == APP_AUDIENCE
    assert match.group(3).endswith(f"/{TENANT_ID}")
    ca = Path(match.group(4))
    assert ca.is_absolute() and ca.is_file() and ca == (tmp_path / "rig" / "emulator" / "ca.pem").resolve()
    assert "portcullis login --dev-user alice" in lines
    assert lines.index("portcullis login --dev-user alice") == lines.index(configure[0]) + 1
    # The self-service web page's URL, on the app's host.
    assert f"The web page: {match.group(1)}/api/ui/" in lines


def test_headers_mode_prints_no_cli_lines(tmp_path: Path) -> None:
    process = run_up(tmp_path / "rig", "headers")
    try:
        lines = read_until_up(process)
    finally:
        stop(process)
    assert any("sign-in: headers" in line for line in lines)
    assert any("WEBSITE_AUTH_ENABLED=true" in line for line in lines)
    assert not any(line.startswith("portcullis ") for line in lines)


def test_an_unknown_mode_is_refused_before_anything_starts(tmp_path: Path) -> None:
    process = run_up(tmp_path / "rig", "easyauth")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "PORTCULLIS_LOCAL_AUTH='easyauth'" in stderr and "jwt or headers" in stderr
    assert not (tmp_path / "rig").exists()
