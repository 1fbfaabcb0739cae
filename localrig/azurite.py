"""Azurite (Blob, Queue, Table storage) from the project's own node_modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localrig.processes import PROJECT_ROOT, ManagedProcess, free_ports, port_is_open

ACCOUNT_NAME = "devstoreaccount1"
# Azurite's published well-known development key; it protects nothing.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"


@dataclass
class Azurite:
    process: ManagedProcess
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT_NAME};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT_NAME};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT_NAME};"
        )

    def stop(self) -> None:
        self.process.stop()


def start_azurite(
    data_dir: Path,
    *,
    blob_port: int | None = None,
    queue_port: int | None = None,
    table_port: int | None = None,
    log_path: Path | None = None,
) -> Azurite:
    """Start Azurite with its data in data_dir; ports default to free ones."""
    if not AZURITE_BIN.exists():
        raise FileNotFoundError(f"{AZURITE_BIN} is missing: run `npm ci` in {PROJECT_ROOT} (make does this)")
    data_dir.mkdir(parents=True, exist_ok=True)
    spare = iter(free_ports(3))
    ports = [blob_port or next(spare), queue_port or next(spare), table_port or next(spare)]
    for port in ports:
        if port_is_open(port):
            raise OSError(f"port {port} is already in use; choose another for Azurite")
    process = ManagedProcess(
        "azurite",
        [
            str(AZURITE_BIN),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--location",
            str(data_dir),
            "--blobPort",
            str(ports[0]),
            "--queuePort",
            str(ports[1]),
            "--tablePort",
            str(ports[2]),
        ],
        log_path=log_path or data_dir / "azurite.log",
    )
    process.wait_ready(lambda: all(port_is_open(port) for port in ports), timeout=60)
    return Azurite(process, *ports)
