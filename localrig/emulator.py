"""The ARM emulator (`python -m emulator`) as a child process."""

from __future__ import annotations

import ssl
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from localrig.processes import ManagedProcess, free_port, port_is_open


@dataclass
class Emulator:
    process: ManagedProcess
    port: int
    data_dir: Path

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "ca.pem"

    def stop(self) -> None:
        self.process.stop()


def _healthy(port: int, ca_file: Path) -> bool:
    if not ca_file.exists():
        return False
    context = ssl.create_default_context(cafile=str(ca_file))
    url = f"https://127.0.0.1:{port}/_emulator/health"
    with urllib.request.urlopen(url, context=context, timeout=2) as response:
        return bool(response.status == 200)


def start_emulator(
    data_dir: Path,
    *,
    port: int | None = None,
    extra_args: list[str] | None = None,
    log_path: Path | None = None,
) -> Emulator:
    """Start the emulator on 127.0.0.1; ready once /_emulator/health answers over verified TLS."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if port_is_open(port):
        raise OSError(f"port {port} is already in use; choose another for the emulator")
    process = ManagedProcess(
        "emulator",
        [
            sys.executable,
            "-m",
            "emulator",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *(extra_args or []),
        ],
        log_path=log_path or data_dir / "emulator.log",
    )
    process.wait_ready(lambda: _healthy(port, data_dir / "ca.pem"), timeout=60)
    return Emulator(process, port, data_dir)
