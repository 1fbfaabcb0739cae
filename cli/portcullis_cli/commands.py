"""What each command does. Errors become exit codes in one place (`run`): the API's ARM error is
printed as `code: message (target: ...)` on stderr."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from portcullis_cli import auth, main
from portcullis_cli import config as cfg
from portcullis_cli.api import ApiError, Client
from portcullis_cli.connect import Endpoint, connection_line, endpoint_of, rdp_file, ssh_argv
from portcullis_cli.output import render
from portcullis_cli.timeparse import TimeError, end_time, format_duration, parse_duration, wire_time
from portcullis_cli.vms import VmNotFoundError, VmPolicy, resolve, reusable, sources, vm_policies

DEFAULT_DURATION = timedelta(hours=1)
POLL_SECONDS = 1.0
# The API's rule (shared/approval.py MIN_BREAK_GLASS_REASON; a unit test keeps them equal): a
# break-glass request states its reason in at least this many characters.
MIN_BREAK_GLASS_REASON = 10


class UsageError(Exception):
    """A command line that cannot be run as given (exit 2)."""


class WaitFailedError(Exception):
    """The rules were not in place in time, or a target refused them (exit 5)."""


class RequestEndedError(Exception):
    """The request ended while the CLI waited for it: denied, its approval lapsed (exit 1)."""


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def out(text: str) -> None:
    if text:
        print(text, flush=True)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    config = cfg.load()
    fmt = args.output or config.output or "table"
    handler = _HANDLERS.get(_command_name(args))
    if handler is None:
        parser.parse_args([*_command_name(args).split(), "--help"])
        return main.USAGE
    try:
        return handler(config, args, fmt)
    except (UsageError, TimeError) as error:
        err(f"error: {error}")
        return main.USAGE
    except auth.NotSignedInError as error:
        err(f"error: {error}")
        return main.NOT_SIGNED_IN
    except auth.SignInRefusedError as error:
        err(f"error: {error}")
        return main.FAILED
    except VmNotFoundError as error:
        err(f"error: {error}")
        return main.NOT_FOUND
    except LookupError as error:  # configuration missing or unreadable
        err(f"error: {error}")
        return main.NOT_CONFIGURED
    except ApiError as error:
        err(f"error: {error}")
        return main.NOT_FOUND if error.status == 404 else main.FAILED
    except WaitFailedError as error:
        err(f"error: {error}")
        return main.TIMED_OUT
    except RequestEndedError as error:
        err(f"error: {error}")
        return main.FAILED
    except KeyboardInterrupt:
        err("interrupted")
        return main.INTERRUPTED


def _command_name(args: argparse.Namespace) -> str:
    sub = (
        getattr(args, f"{args.command}_command", None)
        if args.command in ("vm", "policy", "approvals")
        else None
    )
    return f"{args.command} {sub}" if sub else args.command


# ---- configure, login, logout, whoami ----


def configure(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    changes = {
        "endpoint": args.endpoint,
        "audience": args.audience,
        "authority": args.authority,
        "ca_bundle": str(Path(args.ca_bundle).expanduser().resolve()) if args.ca_bundle else args.ca_bundle,
        "client_id": args.client_id,
        "output": args.default_output,
    }
    if any(value is not None for value in changes.values()):
        cfg.save(changes)
        config = cfg.load()
    shown = dict(vars(config))
    rows = [
        {"setting": key, "value": value, "environment": cfg.ENVIRONMENT[key]} for key, value in shown.items()
    ]
    out(render(shown, rows, ["setting", "value", "environment"], fmt))
    err(f"(stored in {cfg.config_dir() / 'config.json'})")
    return main.OK


def login(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    config.api_url  # noqa: B018 - says "configure first" before anything else
    if args.dev_user:
        cached = auth.login_dev_user(config, args.dev_user, args.password)
    else:
        cached = auth.login_azure(config, use_device_code=args.use_device_code, browser=args.browser)
    me = Client(config).me()
    err(f"signed in as {me['displayName']} ({me['objectId']}) via {cached['kind']}")
    return main.OK


def logout(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    err("signed out" if auth.logout() else "was not signed in")
    return main.OK


def whoami(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    me = Client(config).me()
    row = {**me, "groupIds": len(me.get("groupIds", []))}
    out(
        render(
            me,
            [row],
            ["displayName", "objectId", "tenantId", "sourceAddress", "authentication", "groupIds"],
            fmt,
        )
    )
    return main.OK


# ---- vm list ----


def vm_list(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    client = Client(config)
    policies = client.policies()
    rows = []
    for vm in vm_policies(policies):
        for port in vm.ports:
            max_duration = port.get("maxRequestAccessDuration")
            rows.append(
                {
                    "name": vm.name,
                    "resourceGroup": vm.resource_group,
                    "port": port.get("number"),
                    "protocol": port.get("protocol"),
                    "sources": sources(port),
                    "maxDuration": format_duration(parse_duration(max_duration)) if max_duration else "",
                    "via": _firewall_name(vm.firewall),
                    "id": vm.vm_id,
                }
            )
    data = [
        {
            "id": vm.vm_id,
            "name": vm.name,
            "resourceGroup": vm.resource_group,
            "policyId": vm.policy_id,
            "firewall": vm.firewall,
            "ports": list(vm.ports),
        }
        for vm in vm_policies(policies)
    ]
    columns = ["name", "resourceGroup", "port", "protocol", "sources", "maxDuration", "via"]
    out(render(data, rows, columns, fmt, empty="no VMs: no JIT policy you may read lists one"))
    return main.OK


def _firewall_name(firewall: str | None) -> str:
    if not firewall:
        return "direct"
    return "firewall " + firewall.rstrip("/").rsplit("/", 1)[-1]


# ---- request, ssh, rdp, exec: reuse or request, then wait ----


def _ports(text: str) -> list[int]:
    try:
        ports = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--port {text!r}: give port numbers, comma-separated (22 or 22,3389)") from None
    if not ports or any(not 0 < port < 65536 for port in ports):
        raise UsageError(f"--port {text!r}: ports are 1-65535")
    return ports


class Access:
    """One VM's ports for the caller: reused from an open grant of theirs or requested, then waited
    for. `opened` is the request this run made (None when everything was reused)."""

    def __init__(self, config: cfg.Config, args: argparse.Namespace, ports: list[int]) -> None:
        # Refused here, before any call: an emergency must not wait for a round trip to learn this.
        self.break_glass = check_break_glass(args)
        self.client = Client(config)
        self.args = args
        self.ports = ports
        self.vm: VmPolicy = resolve(vm_policies(self.client.policies()), _vm_arg(args), args.resource_group)
        # A port the policy does not list is the API's to refuse (its message names the field).
        self.me = self.client.me()
        self.source = self._source()
        self.opened: str | None = None
        self.reused: list[str] = []  # the requests of the grants reused, in port order

    def _source(self) -> str:
        source = self.args.source or "my-ip"
        if source != "my-ip":
            return str(source)
        address = self.me.get("sourceAddress")
        if not address:
            raise UsageError(
                "the app cannot see your address (no sourceAddress in GET /api/me): give --source CIDR"
            )
        return str(address)

    def _until(self, now: datetime) -> datetime | None:
        if self.args.duration or self.args.until:
            return end_time(now, self.args.duration, self.args.until, DEFAULT_DURATION)
        return None

    def _default_end(self, now: datetime, port: int) -> datetime:
        """1 hour, or the port's maximum when that is shorter."""
        maximum = (self.vm.port(port) or {}).get("maxRequestAccessDuration")
        limit = parse_duration(maximum) if maximum else DEFAULT_DURATION
        return now + min(DEFAULT_DURATION, limit)

    def ensure(self, wait: bool = True) -> list[Endpoint]:
        """Reuse or request every port; wait for the rules (unless not `wait`); the endpoints."""
        now = datetime.now(UTC)
        until = self._until(now)
        grants = self.client.grants(self.vm.vm_id, active=True)
        reused: dict[int, dict[str, Any]] = {}
        for port in self.ports:
            grant = reusable(grants, self.me["objectId"], port, self.source, until, now)
            if grant is not None:
                reused[port] = grant
                self.reused.append(str(grant["requestId"]))
                # Break-glass is for access you lack: an open grant of yours that covers the port is
                # used as it is, and said so (no emergency is declared, nobody is told).
                unneeded = "; no break-glass needed, none requested for it" if self.break_glass else ""
                err(
                    f"reusing request {grant['requestId']} for {self.vm.name}:{port} "
                    f"(ends {grant['endTimeUtc']}){unneeded}"
                )
        missing = [port for port in self.ports if port not in reused]
        endpoints = {port: endpoint_of(grant) for port, grant in reused.items()}
        if missing:
            answer = self.client.initiate(self.vm.policy_id, self._body(missing, until, now))
            self.opened = str(answer["requestId"])
            err(f"requested {self.vm.name} port {','.join(map(str, missing))}: request {self.opened}")
            if self.break_glass:
                # The initiate answer is Defender's shape: who was told is in the request's own.
                for line in break_glass_notice(self.opened, self.client.request(self.opened)):
                    err(line)
            elif _pending_ports(answer):
                # The initiate answer is Defender's shape: who must approve is in the request's own.
                err(f"request {self.opened}: {_waits_for(self.client.request(self.opened))}")
            if not wait:
                return []
            status = wait_for_request(self.client, self.opened, self.args.timeout)
            for port in status["virtualMachines"][0]["ports"]:
                endpoints[port["number"]] = endpoint_of(port)
        waiting = [port for port, endpoint in endpoints.items() if endpoint is None]
        if waiting and wait:
            # A reused grant still Initiating: wait for its request too.
            for port in waiting:
                status = wait_for_request(self.client, reused[port]["requestId"], self.args.timeout)
                for answered in status["virtualMachines"][0]["ports"]:
                    if answered["number"] == port:
                        endpoints[port] = endpoint_of(answered)
        found = [endpoint for port in self.ports if (endpoint := endpoints.get(port)) is not None]
        if wait and len(found) < len(self.ports):
            lost = [port for port in self.ports if endpoints.get(port) is None]
            raise WaitFailedError(
                f"no address to connect to for port {','.join(map(str, lost))} (revoked meanwhile?): "
                f"`portcullis list --mine --vm {self.vm.name}`"
            )
        return found

    def _body(self, ports: list[int], until: datetime | None, now: datetime) -> dict[str, Any]:
        ends = {port: until or self._default_end(now, port) for port in ports}
        return initiate_body(self.args, self.vm.vm_id, self.source, ends)


def initiate_body(
    args: argparse.Namespace, vm_id: str, source: str, ends: dict[int, datetime]
) -> dict[str, Any]:
    """The initiate body for `ends` (port -> end time) from the command line's --justification,
    --ticket and --break-glass. Pure."""
    justification = args.justification
    if args.ticket:
        # The HTTP initiate has no ticket field (tickets are the queue's); keep it where people read.
        justification = f"[{args.ticket}] {justification or ''}".strip()
    body: dict[str, Any] = {
        "virtualMachines": [
            {
                "id": vm_id,
                "ports": [
                    {"number": port, "endTimeUtc": wire_time(end), "allowedSourceAddressPrefix": source}
                    for port, end in ends.items()
                ],
            }
        ]
    }
    if justification:
        body["justification"] = justification
    if getattr(args, "break_glass", False):
        body["breakGlass"] = True
    return body


def check_break_glass(args: argparse.Namespace) -> bool:
    """Whether the command line asks for break-glass; UsageError (exit 2) when it does without a
    reason of at least MIN_BREAK_GLASS_REASON characters in --justification (a --ticket id alone is
    not a reason). Whether the VM's policy allows it is the API's to say. Pure."""
    if not getattr(args, "break_glass", False):
        return False
    reason = (args.justification or "").strip()
    if len(reason) < MIN_BREAK_GLASS_REASON:
        given = f" (got {len(reason)})" if reason else ""
        raise UsageError(
            f"--break-glass needs --justification with the reason, at least {MIN_BREAK_GLASS_REASON} "
            f'characters{given}: --justification "INC-4711 production down, need a shell"'
        )
    return True


def break_glass_notice(request_id: str, status: dict[str, Any]) -> list[str]:
    """What a break-glass request prints on stderr once made: that it is break-glass (opened without
    approval), who was told, and that it awaits an approver's review. Pure."""
    approval = status.get("approval") or {}
    told = ", ".join(approval.get("approvers") or []) or "the VM's approvers"
    lines = [
        f"BREAK-GLASS: request {request_id} opens at once, without approval",
        f"  approvers told: {told}",
    ]
    if approval.get("reviewRequired", True):
        lines.append(
            f"  it awaits an approver's review (flagged until then): `portcullis status {request_id}`"
        )
    return lines


def _vm_arg(args: argparse.Namespace) -> str:
    return str(getattr(args, "vm", None) or "")


_ENDED = ("Denied", "Expired")


def _ports_of(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [port for vm in status.get("virtualMachines", []) for port in vm.get("ports", [])]


def _pending_ports(status: dict[str, Any]) -> list[int]:
    return [port["number"] for port in _ports_of(status) if port.get("status") == "Pending"]


def _waits_for(status: dict[str, Any]) -> str:
    """`Pending (Approval required): waits for 1 approval(s) from <ids>, until <time>`. Pure."""
    approval = status.get("approval") or {}
    text = "Pending (Approval required)"
    if approval:
        approvers = ", ".join(approval.get("approvers", []))
        text += f": waits for {approval.get('required')} approval(s) from {approvers}"
        if approval.get("pendingUntilUtc"):
            text += f", until {approval['pendingUntilUtc']}"
    return text


def port_summary(status: dict[str, Any]) -> str:
    """`22 Initiated, 3389 Pending (waiting for approval)`: the live status line's text. Pure."""
    parts = []
    for port in _ports_of(status):
        text = f"{port['number']} {port['status']}"
        if port["status"] == "Pending":
            text += " (waiting for approval)"
        parts.append(text)
    return ", ".join(parts)


def ended_reason(status: dict[str, Any]) -> str | None:
    """Why a request that will never open ended (denied, approval lapsed), or None. Pure."""
    ended = [port for port in _ports_of(status) if port.get("status") in _ENDED]
    if not ended:
        return None
    approval = status.get("approval") or {}
    denials = [d for d in approval.get("decisions", []) if d.get("verdict") == "Denied"]
    if denials:
        return "was denied: " + decision_line(denials[-1])
    if ended[0]["status"] == "Expired":
        return f"lapsed: nobody approved it by {approval.get('pendingUntilUtc') or 'its pending timeout'}"
    return f"ended: {ended[0]['status']} ({ended[0].get('statusReason')})"


def decision_line(decision: dict[str, Any]) -> str:
    """`Approved by Bob (b0b...) at <time>: ok`. Pure."""
    who = f"{decision.get('displayName')} ({decision.get('objectId')})"
    line = f"{decision.get('verdict')} by {who} at {decision.get('timeUtc')}"
    if decision.get("relayedBy"):
        line += f" (relayed by {decision['relayedBy']})"
    return line + (f": {decision['comment']}" if decision.get("comment") else "")


def approval_lines(status: dict[str, Any]) -> list[str]:
    """The approval state under `status`'s table: who must approve, who decided, until when it waits,
    an extension waiting for approval, the break-glass review flag. Empty without approval. Pure."""
    approval = status.get("approval")
    if not approval:
        return []
    decisions = approval.get("decisions") or []
    approvals = sum(1 for d in decisions if d.get("verdict") == "Approved")
    lines = [
        f"approval: {approval.get('status')}, {approvals} of {approval.get('required')} approval(s) from "
        + ", ".join(approval.get("approvers") or [])
    ]
    if approval.get("status") == "Pending" and approval.get("pendingUntilUtc"):
        lines.append(f"  pending until {approval['pendingUntilUtc']}")
    lines += [f"  {decision_line(d)}" for d in decisions]
    if approval.get("breakGlass"):
        reviewed = approval.get("review")
        lines.append(
            f"  break-glass: reviewed, {decision_line(reviewed)}"
            if reviewed
            else "  break-glass: waits for an approver's review (`POST /api/requests/{id}/review`)"
        )
    extension = approval.get("extension")
    if extension:
        lines.append(f"  extension to {extension.get('endTimeUtc')}: {extension.get('status')}")
        if extension.get("status") == "Pending":
            lines.append(f"    pending until {extension.get('pendingUntilUtc')}")
        lines += [f"    {decision_line(d)}" for d in extension.get("decisions") or []]
    return lines


def wait_for_request(client: Client, request_id: str, timeout: float) -> dict[str, Any]:
    """Poll GET /api/requests/{id} with a live status line until every port is Initiated (or Revoked):
    through `Pending` while approvers decide; RequestEndedError when it is denied or its approval
    lapses; WaitFailedError on timeout (a pending request stays pending) or when a target refuses the
    rule."""
    deadline = time.monotonic() + timeout
    live = _StatusLine()
    try:
        while True:
            status = client.request(request_id)
            ports = _ports_of(status)
            summary = port_summary(status)
            live.update(f"request {request_id}: {summary}")
            ended = ended_reason(status)
            if ended:
                raise RequestEndedError(f"request {request_id} {ended}")
            failed = [
                (port["number"], target)
                for port in ports
                for target, state in (port.get("targets") or {}).items()
                if state == "Failed"
            ]
            if failed:
                port, target = failed[0]
                raise WaitFailedError(
                    f"port {port}: {target} refused the rule "
                    f"(enforcement keeps trying; `portcullis status {request_id}`)"
                )
            if all(port["status"] in ("Initiated", "Revoked") for port in ports) and all(
                port["status"] == "Revoked" or port.get("connectAddress") for port in ports
            ):
                return status
            if time.monotonic() > deadline:
                if _pending_ports(status):
                    raise WaitFailedError(
                        f"still waiting for approval after {timeout:.0f} s; the request stays pending "
                        f"({_waits_for(status)}): `portcullis status {request_id}`"
                    )
                raise WaitFailedError(
                    f"the rules were not in place after {timeout:.0f} s ({summary}); "
                    f"`portcullis status {request_id}`"
                )
            time.sleep(POLL_SECONDS)
    finally:
        live.close()


class _StatusLine:
    """A live status line on a terminal (rich); on a pipe, one stderr line per change."""

    def __init__(self) -> None:
        self._last = ""
        self._status: Any = None
        if sys.stderr.isatty():
            from rich.console import Console

            self._status = Console(stderr=True).status("waiting for the rules")
            self._status.start()

    def update(self, text: str) -> None:
        if text == self._last:
            return
        self._last = text
        if self._status is not None:
            self._status.update(text)
        else:
            err(text)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()


def request(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    access = Access(config, args, _ports(args.port))
    endpoints = access.ensure(wait=not args.no_wait)
    if args.no_wait:
        # The request to follow: the one opened, else the one whose grant was reused.
        out(access.opened or next(iter(access.reused), ""))
        return main.OK
    lines = [connection_line(endpoint, args.user or "<user>") for endpoint in endpoints]
    data = {
        "requestId": access.opened,
        "vm": access.vm.vm_id,
        "breakGlass": access.break_glass and access.opened is not None,
        "connections": [
            {"port": e.vm_port, "address": e.address, "connectPort": e.port, "line": line}
            for e, line in zip(endpoints, lines, strict=True)
        ],
    }
    if fmt == "json":
        out(json.dumps(data, indent=2))
    else:
        for line in lines:
            out(line)
    return main.OK


def ssh(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    access = Access(config, args, [args.port])
    endpoints = access.ensure()
    argv = ssh_argv(endpoints[0], args.user, args.rest)
    err(" ".join(argv))
    return subprocess.call(argv)  # noqa: S603 - the user's own ssh, with their arguments


def rdp(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    access = Access(config, args, [args.port])
    endpoint = access.ensure()[0]
    path = Path(args.file or f"{access.vm.name}.rdp")
    path.write_text(rdp_file(endpoint, args.user), encoding="utf-8")
    out(connection_line(endpoint))
    err(f"wrote {path}")
    if args.open or sys.platform == "win32":  # Windows always has mstsc; elsewhere ask for it
        _open(path)
    return main.OK


def _open(path: Path) -> None:
    import shutil

    if sys.platform == "win32":
        os.startfile(path)  # type: ignore[attr-defined]  # noqa: S606 - Windows opens .rdp with mstsc
    elif sys.platform == "darwin":
        subprocess.call(["open", str(path)])  # noqa: S603, S607
    elif shutil.which("xdg-open"):
        subprocess.call(["xdg-open", str(path)])  # noqa: S603, S607
    else:
        err("no client to open it with here: use the mstsc line, or an RDP client of yours")


def exec_command(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    command = list(args.rest)
    if not command:
        raise UsageError("exec needs a command after --")
    received: list[int] = []
    child: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        if child and child[0].poll() is None:
            child[0].send_signal(signum)
        else:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    access: Access | None = None
    try:
        access = Access(config, args, [args.port])
        endpoint = access.ensure()[0]
        env = {**os.environ, "PORTCULLIS_HOST": endpoint.address, "PORTCULLIS_PORT": str(endpoint.port)}
        env["PORTCULLIS_REQUEST_ID"] = access.opened or ""
        child.append(subprocess.Popen(command, env=env))  # noqa: S603 - the pipeline's own command
        err(f"running {command[0]} with {connection_line(endpoint)}")
        code = child[0].wait()
        return 128 - code if code < 0 else code
    except KeyboardInterrupt:
        # SIGINT or SIGTERM before the command ran: revoke what was opened, answer as a shell does.
        return 128 + (received[-1] if received else signal.SIGINT)
    finally:
        # A second Ctrl-C must not cut the revoke short: signals wait until it is done.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        if access is not None and access.opened:
            try:
                access.client.revoke(access.opened)
                err(f"revoked request {access.opened}")
            except (ApiError, auth.NotSignedInError) as error:
                err(f"error: could not revoke request {access.opened}: {error} (it ends at its end time)")
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---- status, list, revoke, compliance ----


def _port_rows(status: dict[str, Any], user: str | None) -> list[dict[str, Any]]:
    rows = []
    for vm in status["virtualMachines"]:
        for port in vm["ports"]:
            endpoint = endpoint_of(port)
            rows.append(
                {
                    "vm": vm["id"].rsplit("/", 1)[-1],
                    "port": port["number"],
                    "status": port["status"],
                    "reason": port.get("statusReason"),
                    "end": port.get("endTimeUtc"),
                    "source": port.get("allowedSourceAddressPrefix")
                    or port.get("allowedSourceAddressPrefixes"),
                    "connect": connection_line(endpoint, user or "<user>") if endpoint else "",
                }
            )
    return rows


def status(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    answer = Client(config).request(args.request_id)
    out(
        render(
            answer,
            _port_rows(answer, args.user),
            ["vm", "port", "status", "reason", "end", "source", "connect"],
            fmt,
        )
    )
    if fmt == "table":
        out("\n".join(approval_lines(answer)))
    return main.OK


_LIST_COLUMNS = ["request", "vm", "port", "status", "reason", "end", "requestor", "source", "connect"]
_OPEN = ("Initiating", "Initiated", "Pending")


def request_rows(requests: list[dict[str, Any]], vm_id: str | None, active: bool) -> list[dict[str, Any]]:
    """`list --mine`'s rows from your request records (`GET /api/requests?requester=me`): one per VM
    and port, on `vm_id` only when given, only open or waiting ports with `active`. Pure."""
    rows = []
    for item in requests:
        for vm in item.get("virtualMachines", []):
            if vm_id is not None and vm["id"].lower() != vm_id.lower():
                continue
            for port in vm.get("ports", []):
                if active and port.get("status") not in _OPEN:
                    continue
                sources = port.get("allowedSourceAddressPrefixes") or [port.get("allowedSourceAddressPrefix")]
                rows.append(
                    {
                        "request": item.get("requestId"),
                        "vm": vm["id"].rsplit("/", 1)[-1],
                        "port": port.get("number"),
                        "status": port.get("status"),
                        "reason": port.get("statusReason"),
                        "end": port.get("endTimeUtc"),
                        "requestor": item.get("requestor"),
                        "source": [s for s in sources if s],
                        "connect": f"{port['connectAddress']}:{port['connectPort']}"
                        if port.get("connectAddress")
                        else "",
                    }
                )
    return rows


def list_grants(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    client = Client(config)
    if args.mine:
        # One call per page of your own requests (GET /api/requests?requester=me), whatever the
        # number of VMs; `-o json` prints those request records.
        vm_id = (
            resolve(vm_policies(client.policies()), args.vm, args.resource_group).vm_id if args.vm else None
        )
        requests = client.my_requests(active=args.active)
        rows = request_rows(requests, vm_id, args.active)
        shown = {row["request"] for row in rows}
        mine = [item for item in requests if item.get("requestId") in shown]
        out(render(mine, rows, _LIST_COLUMNS, fmt, empty="no requests"))
        return main.OK
    if not args.vm:
        # Who holds access now on every VM you may see: one call per page (GET /api/grants?active=true),
        # whatever the number of VMs. Closed grants are a VM's history: `--vm`.
        grants, more = client.open_grants()
        if not args.active:
            err("open grants on every VM you may see; for closed ones too, give --vm")
        if more:
            err(f"showing the {len(grants)} open grants that end soonest; more were not read")
    else:
        vm_id = resolve(vm_policies(client.policies()), args.vm, args.resource_group).vm_id
        grants = client.grants(vm_id, active=args.active)
    grants.sort(key=lambda grant: grant["startTimeUtc"], reverse=True)
    out(render(grants, grant_rows(grants), _LIST_COLUMNS, fmt, empty="no grants"))
    return main.OK


def grant_rows(grants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`list`'s rows from `GET /api/grants` answers: one per grant. Pure."""
    return [
        {
            "request": grant["requestId"],
            "vm": grant["vmId"].rsplit("/", 1)[-1],
            "port": grant["port"],
            "status": grant["status"],
            "reason": grant["statusReason"],
            "end": grant["endTimeUtc"],
            "requestor": grant["requestor"]["name"],
            "source": grant["sourceAddressPrefixes"],
            "connect": f"{grant['connectAddress']}:{grant['connectPort']}"
            if grant.get("connectAddress")
            else "",
        }
        for grant in grants
    ]


def revoke(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    answer = Client(config).revoke(args.request_id)
    out(render(answer, _port_rows(answer, None), ["vm", "port", "status", "reason", "end"], fmt))
    err(f"revoked request {args.request_id}: the rules close within seconds")
    return main.OK


def compliance(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    answer = Client(config).compliance()
    rows = [
        {**finding, "target": finding["targetId"].rsplit("/", 1)[-1]} for finding in answer.get("value", [])
    ]
    columns = ["kind", "target", "ruleName", "port", "detail", "lastSeen"]
    out(render(answer, rows, columns, fmt, empty="no findings"))
    return main.OK


# ---- policy apply / export ----

_POLICY_KEEP = ("virtualMachines",)


def _declared(policy: dict[str, Any]) -> dict[str, Any]:
    """What a policy file declares: kind and virtualMachines (not requests or provisioning state)."""
    properties = policy.get("properties", {})
    return {
        "kind": policy.get("kind", "Basic"),
        "properties": {key: properties[key] for key in _POLICY_KEEP if key in properties},
    }


def _normal(vms: list[dict[str, Any]]) -> dict[str, Any]:
    return {vm["id"].lower(): json.loads(json.dumps(vm, sort_keys=True)) for vm in vms}


def policy_changes(current: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """What applying `wanted` changes, one line per VM (empty: nothing). Pure."""
    want = _normal(wanted["properties"].get("virtualMachines", []))
    if current is None:
        return [f"+ {vm_id.rsplit('/', 1)[-1]} (new policy)" for vm_id in want]
    have = _normal(current.get("properties", {}).get("virtualMachines", []))
    lines = [f"+ {vm_id.rsplit('/', 1)[-1]}" for vm_id in want if vm_id not in have]
    lines += [f"- {vm_id.rsplit('/', 1)[-1]}" for vm_id in have if vm_id not in want]
    lines += [
        f"~ {vm_id.rsplit('/', 1)[-1]}" for vm_id in want if vm_id in have and want[vm_id] != have[vm_id]
    ]
    return lines


def _policy_file(path: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"-f {path}: {error}") from None
    policies = data.get("policies") if isinstance(data, dict) and "policies" in data else data
    policies = policies if isinstance(policies, list) else [policies]
    for index, policy in enumerate(policies):
        if not isinstance(policy, dict) or not str(policy.get("id", "")).lower().startswith(
            "/subscriptions/"
        ):
            raise UsageError(
                f"-f {path}: policy {index} has no id (/subscriptions/.../jitNetworkAccessPolicies/NAME)"
            )
    return policies


def policy_apply(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    client = Client(config)
    results = []
    for policy in _policy_file(args.file):
        wanted = _declared(policy)
        changes = policy_changes(client.policy(policy["id"]), wanted)
        action = "unchanged" if not changes else ("would change" if args.dry_run else "changed")
        if changes and not args.dry_run:
            client.put_policy(policy["id"], wanted)
        results.append({"id": policy["id"], "action": action, "changes": changes})
        if fmt == "table":
            out(f"{action}: {policy['id']}")
            for line in changes:
                out(f"   {line}")
    if fmt != "table":
        rows = [{**result, "changes": "; ".join(result["changes"])} for result in results]
        out(render(results, rows, ["action", "id", "changes"], fmt))
    return main.OK


def policy_export(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    policies = [{"id": policy["id"], **_declared(policy)} for policy in Client(config).policies()]
    text = json.dumps({"policies": policies}, indent=2)
    if args.file:
        Path(args.file).write_text(text + "\n", encoding="utf-8")
        err(f"wrote {len(policies)} policies to {args.file}")
    else:
        out(text)
    return main.OK


# ---- approvals, extend (issue 13's routes) ----


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def pending_row(item: dict[str, Any]) -> dict[str, Any]:
    """One row of `approvals list`: what waits (the request, or its extension), for whom, how long
    it would open, until when it waits. Pure."""
    vms = item.get("virtualMachines", [])
    ports = [port for vm in vms for port in vm.get("ports", [])]
    approval = item.get("approval") or {}
    extension = approval.get("extension") or {}
    start = _parse_time(item.get("startTimeUtc"))
    ends = [end for port in ports if (end := _parse_time(port.get("endTimeUtc")))]
    if extension.get("status") == "Pending":
        waiting, until = f"extension to {extension.get('endTimeUtc')}", extension.get("pendingUntilUtc")
        duration = ""
    else:
        waiting, until = "request", approval.get("pendingUntilUtc")
        # The window opens at approval and lasts what was asked: end - start of the ask, to the minute
        # (the CLI counts --duration from its own clock, the server stamps the start a moment later).
        asked = max(ends) - start if start and ends else timedelta(0)
        duration = format_duration(timedelta(minutes=round(asked.total_seconds() / 60))) if asked else ""
    return {
        "request": item.get("requestId"),
        "requestor": item.get("requestor"),
        "vms": sorted({vm["id"].rsplit("/", 1)[-1] for vm in vms}),
        "ports": sorted({port["number"] for port in ports}),
        "duration": duration,
        "pendingUntil": until,
        "waiting": waiting,
        "justification": item.get("justification"),
    }


def review_row(item: dict[str, Any]) -> dict[str, Any]:
    """One row of `approvals list` for a break-glass request awaiting your review: it is open
    already, so no duration or deadline; `waiting` says what is asked of you. Pure."""
    row = pending_row(item)
    return {**row, "duration": "", "pendingUntil": "", "waiting": "review (break-glass, open)"}


def approvals_list(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    client = Client(config)
    pending, reviews = client.pending_approvals(), client.reviews_awaited()
    columns = ["request", "requestor", "vms", "ports", "duration", "pendingUntil", "waiting", "justification"]
    rows = [pending_row(item) for item in pending] + [review_row(item) for item in reviews]
    out(render(pending + reviews, rows, columns, fmt, empty="nothing waits for you"))
    return main.OK


def decision_summary(answer: dict[str, Any], decision: str) -> list[str]:
    """What `approvals approve|deny` prints: the decision made and where the request stands. Pure."""
    lines = approval_lines(answer)
    ports = port_summary(answer)
    opened = decision == "approve" and not _pending_ports(answer)
    return [*lines, f"ports: {ports}" + (" (the rules open within seconds)" if opened else "")]


def _decide(decision: str) -> Callable[[cfg.Config, argparse.Namespace, str], int]:
    def handler(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
        answer = Client(config).decide(args.request_id, decision, args.comment)
        if fmt == "json":
            out(json.dumps(answer, indent=2))
        else:
            out("\n".join(decision_summary(answer, decision)))
        done = {"approve": "approved", "deny": "denied", "review": "reviewed"}[decision]
        err(f"{done} request {args.request_id}")
        return main.OK

    return handler


def extend_body(now: datetime, duration: str | None, until: str | None) -> dict[str, str]:
    """`{"endTimeUtc"}` for POST /api/requests/{id}/extend: --duration counts from now. Pure."""
    if not duration and not until:
        raise UsageError("extend needs --duration or --until")
    return {"endTimeUtc": wire_time(end_time(now, duration, until, DEFAULT_DURATION))}


def extension_summary(answer: dict[str, Any], request_id: str) -> str:
    """`request X: port 22 ends <end>`, or that the extension waits for approval. Pure."""
    extension = (answer.get("approval") or {}).get("extension") or {}
    if extension.get("status") == "Pending":
        return (
            f"request {request_id}: the extension to {extension.get('endTimeUtc')} waits for approval "
            f"(until {extension.get('pendingUntilUtc')}); the grant keeps its current end meanwhile"
        )
    ends = ", ".join(
        f"port {port['number']} ends {port.get('endTimeUtc')}"
        for port in _ports_of(answer)
        if port.get("status") in ("Initiated", "Initiating", "Pending")
    )
    return f"request {request_id}: {ends or port_summary(answer)}"


def extend(config: cfg.Config, args: argparse.Namespace, fmt: str) -> int:
    body = extend_body(datetime.now(UTC), args.duration, args.until)
    answer = Client(config).extend(args.request_id, body["endTimeUtc"])
    if fmt == "json":
        out(json.dumps(answer, indent=2))
    else:
        out(extension_summary(answer, args.request_id))
    return main.OK


_HANDLERS: dict[str, Callable[[cfg.Config, argparse.Namespace, str], int]] = {
    "configure": configure,
    "login": login,
    "logout": logout,
    "whoami": whoami,
    "vm list": vm_list,
    "request": request,
    "ssh": ssh,
    "rdp": rdp,
    "status": status,
    "list": list_grants,
    "revoke": revoke,
    "compliance": compliance,
    "exec": exec_command,
    "policy apply": policy_apply,
    "policy export": policy_export,
    "approvals list": approvals_list,
    "approvals approve": _decide("approve"),
    "approvals deny": _decide("deny"),
    "approvals review": _decide("review"),
    "extend": extend,
}
