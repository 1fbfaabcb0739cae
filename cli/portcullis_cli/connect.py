"""Connection lines by protocol: `ssh -p PORT user@host` for SSH, `mstsc /v:host:port` for RDP,
`host:port` for anything else. Behind a firewall the API answers the firewall's public address and
the mapped port (`connectAddress`, `connectPort`), so the line always names where to connect, not
the VM's own port. Pure."""

from __future__ import annotations

from dataclasses import dataclass

SSH_PORTS = frozenset({22})
RDP_PORTS = frozenset({3389})


@dataclass(frozen=True)
class Endpoint:
    """Where to connect for one granted VM port."""

    vm_port: int  # the port on the VM (what the policy names): it says which protocol
    address: str  # the VM's public IP, or the firewall's
    port: int  # the port to connect to (behind a firewall: the mapped port)


def connection_line(endpoint: Endpoint, user: str | None = None) -> str:
    if endpoint.vm_port in SSH_PORTS:
        return " ".join(ssh_argv(endpoint, user))
    if endpoint.vm_port in RDP_PORTS:
        return f"mstsc /v:{endpoint.address}:{endpoint.port}"
    return f"{endpoint.address}:{endpoint.port}"


def ssh_argv(endpoint: Endpoint, user: str | None, extra: list[str] | None = None) -> list[str]:
    target = f"{user}@{endpoint.address}" if user else endpoint.address
    return ["ssh", "-p", str(endpoint.port), target, *(extra or [])]


def rdp_file(endpoint: Endpoint, user: str | None = None) -> str:
    """An `.rdp` file Microsoft's clients (mstsc, Windows App) open."""
    lines = [f"full address:s:{endpoint.address}:{endpoint.port}", "prompt for credentials:i:1"]
    if user:
        lines.append(f"username:s:{user}")
    return "\r\n".join(lines) + "\r\n"


def endpoint_of(port: dict[str, object]) -> Endpoint | None:
    """From a port of GET /api/requests/{id} (`number`, `connectAddress`, `connectPort`) or a grant of
    GET /api/grants (`port`, `connectAddress`, `connectPort`); None until enforcement knows the
    address."""
    address = port.get("connectAddress")
    vm_port = port.get("number", port.get("port"))
    connect_port = port.get("connectPort") or port.get("mappedPort") or vm_port
    if not address or not isinstance(vm_port, int) or not isinstance(connect_port, int):
        return None
    return Endpoint(vm_port=vm_port, address=str(address), port=connect_port)
