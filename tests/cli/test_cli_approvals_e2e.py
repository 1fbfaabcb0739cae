"""The real `portcullis` process against the local stack for issue 13's approvals and extensions
(issue 14's CLI): a policy whose vm-web needs bob's approval; alice's `request --no-wait` answers
Pending (exit 0: waiting for approval is not an error), a waiting `request` follows the approval to
its connection line, or ends with the denial (exit 1); bob's `approvals list` (table and json),
`approvals approve` opening the rule (checked in the emulator through azure-mgmt-network) and
`approvals deny`; refusals (self-approval, a non-approver) exit 1 with the API's code and message;
`extend` on a VM without approval moves the end; `status` shows who must approve and who decided;
`list --mine` from one call of `GET /api/requests?requester=me`; `request --break-glass` opening an
approval VM at once (refused locally without a reason, by the API where no approval applies), then in
bob's `approvals list` as a review, and `approvals review`.

The process is this checkout's CLI source: `python -m portcullis_cli` with the repository's `cli/`
first on PYTHONPATH (the .venv console script may point at another checkout's editable install).
One stack and one estate for the module."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.network import NetworkManagementClient

from localrig.devusers import ALICE, BOB, EVE
from localrig.estates.snapshot import wait_for
from localrig.stack import start_stack
from tests.cli.test_cli_e2e import CLI_SOURCE, Rig, request_id_of, seed_cli_estate

# breakGlass: a request may open at once with a reason, and then waits for bob's review.
APPROVAL = {"approvers": [BOB.object_id], "required": 1, "pendingTimeout": "PT1H", "breakGlass": True}


class SourceRig(Rig):
    """Rig whose `portcullis` is `python -m portcullis_cli` (this checkout's cli/ is first on
    PYTHONPATH, `Rig.env`): it needs no console script in .venv/bin."""

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "portcullis_cli", *args]

    def cli(
        self, user: str, *args: str, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args), env=self.env(user), capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert done.returncode == 0, f"portcullis {' '.join(args)} -> {done.returncode}\n{done.stderr}"
        return done

    def allows_of(self, grant_id: str) -> list[Any]:
        """The Allow rules of `grant_id` in any NSG of the estate (the SDK's view)."""
        return [
            rule
            for nsg in self.network.network_security_groups.list(self.estate.resource_group)
            for rule in nsg.security_rules or []
            if (rule.name or "").endswith(grant_id) and rule.access == "Allow"
        ]

    def status(self, user: str, request_id: str) -> dict[str, Any]:
        return dict(json.loads(self.cli(user, "status", request_id, "-o", "json", check=True).stdout))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SourceRig]:
    home = tmp_path_factory.mktemp("cli-appr-home")
    with start_stack(tmp_path_factory.mktemp("cli-appr-stack")) as stack:
        # The CLI resolves VM names from the policies its user may read; bob decides on a policy he reads.
        arm, estate = seed_cli_estate(stack, "rg-cliappr", (ALICE, BOB, EVE), {"vm-web": APPROVAL})
        rig = SourceRig(stack, arm, estate, arm.client(NetworkManagementClient), home)
        configure = stack.cli_configure_line().split()[1:]
        for user in ("alice", "bob", "eve"):
            rig.cli(user, *configure, check=True)
            rig.cli(user, "login", "--dev-user", user, check=True)
        yield rig


def test_the_cli_under_test_is_this_checkouts(rig: SourceRig) -> None:
    probe = subprocess.run(
        [*rig.argv()[:1], "-c", "import portcullis_cli; print(portcullis_cli.__file__)"],
        env=rig.env("alice"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(probe.stdout.strip()).resolve().is_relative_to(CLI_SOURCE)


def _pending_request(rig: SourceRig, port: str, source: str) -> str:
    done = rig.cli(
        "alice", "request", "vm-web", "--port", port, "--duration", "30m", "--source", source, "--no-wait"
    )
    assert done.returncode == 0, done.stderr  # waiting for approval is not an error with --no-wait
    request_id = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), done.stdout
    assert re.search(
        f"request {request_id}: Pending \\(Approval required\\): "
        f"waits for 1 approval\\(s\\) from {BOB.object_id}, until \\S+Z",
        done.stderr,
    ), done.stderr
    return request_id


def test_approval_round_trip_pending_list_refusals_approve(rig: SourceRig) -> None:
    request_id = _pending_request(rig, "22", "203.0.113.7/32")
    # The no-wait answer says what happens next, on stderr: pending, and who must approve.
    status = rig.status("alice", request_id)
    port = status["virtualMachines"][0]["ports"][0]
    assert (port["status"], port["statusReason"]) == ("Pending", "Approval required")
    assert status["approval"]["status"] == "Pending" and status["approval"]["approvers"] == [BOB.object_id]
    assert rig.allows_of(port["grantId"]) == []  # nothing opened
    table = rig.cli("alice", "status", request_id, check=True).stdout
    assert re.search(r"vm-web\s+22\s+Pending\s+Approval required", table), table
    assert re.search(r"approval: Pending, 0 of 1 approval\(s\) from " + BOB.object_id, table), table
    assert "pending until " in table

    # bob sees it waiting for him: the table names the request, requester, VM and port; json is the API's.
    listed = rig.cli("bob", "approvals", "list", check=True).stdout
    assert re.search(
        re.escape(request_id) + r"\s+alice@portcullis.local\s+vm-web\s+22\s+30m\s+\S+Z", listed
    ), listed
    as_json = json.loads(rig.cli("bob", "approvals", "list", "-o", "json", check=True).stdout)
    assert request_id in [item["requestId"] for item in as_json]
    # Not on alice's list (her own request), nor on eve's (not an approver).
    for user in ("alice", "eve"):
        mine = rig.cli(user, "approvals", "list", "-o", "json", check=True).stdout
        assert request_id not in [item["requestId"] for item in json.loads(mine)]

    # Refusals: exit 1, `error: <code>: <message>` as the API answered, nothing on stdout.
    own = rig.cli("alice", "approvals", "approve", request_id, "--comment", "me")
    assert own.returncode == 1 and own.stdout == ""
    assert re.fullmatch(r"error: SelfApprovalNotAllowed: .*may not decide it", own.stderr.strip()), own.stderr
    eve = rig.cli("eve", "approvals", "approve", request_id)
    assert eve.returncode == 1 and eve.stdout == ""
    assert re.fullmatch(r"error: NotAnApprover: .*is not an approver of this request.*", eve.stderr.strip())
    assert rig.status("alice", request_id)["approval"]["decisions"] == []

    approved = rig.cli("bob", "approvals", "approve", request_id, "--comment", "ok")
    assert approved.returncode == 0, approved.stderr
    assert re.search(r"Approved by bob@portcullis.local", approved.stdout), approved.stdout
    # The rule appears in the NSG (through azure-mgmt-network), for this request's grant and source.
    # vm-web sits behind its subnet's NSG and its NIC's: one Allow in each (two NSG writes, so wait
    # for both; the first alone was seen under load).
    rules = wait_for(
        lambda: len(found := rig.allows_of(port["grantId"])) >= 2 and found,
        60,
        "the Allow rules of the approved grant in both NSGs",
    )
    assert [rule.destination_port_range for rule in rules] == ["22", "22"]
    assert all("203.0.113.7" in (rule.source_address_prefix or "") for rule in rules)
    table = rig.cli("alice", "status", request_id, check=True).stdout
    assert re.search(r"approval: Approved, 1 of 1", table), table
    assert re.search(r"Approved by bob@portcullis.local \(" + BOB.object_id + r"\) at \S+: ok", table), table
    assert request_id not in rig.cli("bob", "approvals", "list", "-o", "tsv", check=True).stdout
    # Deciding again is refused, not counted twice.
    again = rig.cli("bob", "approvals", "approve", request_id)
    assert again.returncode == 1 and again.stderr.startswith("error: "), again.stderr
    rig.cli("alice", "revoke", request_id, check=True)


def _waiting(rig: SourceRig, *args: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    """A `portcullis request` that waits, started in the background; its request id from stderr."""
    process = subprocess.Popen(
        rig.argv(*args), env=rig.env("alice"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    seen: list[str] = []
    while line := process.stderr.readline():
        seen.append(line)
        if "request " in line and "requested" in line:
            return process, request_id_of(line), seen
    process.kill()
    raise AssertionError("".join(seen))


def test_a_waiting_request_follows_the_approval_to_its_connection_line(rig: SourceRig) -> None:
    process, request_id, seen = _waiting(
        rig,
        "request",
        "vm-web",
        "--port",
        "3389",
        "--duration",
        "10m",
        "--source",
        "192.0.2.21/32",
        "--timeout",
        "90",
    )
    # It says it waits for approval (the status line on a pipe: one line per change).
    assert process.stderr is not None
    seen += [process.stderr.readline(), process.stderr.readline()]
    assert f"request {request_id}: Pending (Approval required): waits for 1 approval(s)" in seen[-2], seen
    assert seen[-1].strip() == f"request {request_id}: 3389 Pending (waiting for approval)", seen
    rig.cli("bob", "approvals", "approve", request_id, "--comment", "go", check=True)
    stdout, rest = process.communicate(timeout=90)
    assert process.returncode == 0, "".join(seen) + rest
    assert stdout.strip() == f"mstsc /v:{rig.estate.web_public_ip}:3389"
    rig.cli("alice", "revoke", request_id, check=True)


def test_a_denied_request_ends_a_waiting_cli_with_exit_1(rig: SourceRig) -> None:
    process, request_id, seen = _waiting(
        rig,
        "request",
        "vm-web",
        "--port",
        "3389",
        "--duration",
        "10m",
        "--source",
        "192.0.2.22/32",
        "--timeout",
        "90",
    )
    denied = rig.cli("bob", "approvals", "deny", request_id, "--comment", "not now")
    assert denied.returncode == 0, denied.stderr
    assert "Denied by bob@portcullis.local" in denied.stdout
    stdout, rest = process.communicate(timeout=90)
    assert process.returncode == 1, "".join(seen) + rest
    assert stdout == ""
    assert re.search(r"error: request \S+ was denied: Denied by bob@portcullis.local .*: not now", rest), rest
    status = rig.status("alice", request_id)
    assert status["approval"]["status"] == "Denied"
    assert status["virtualMachines"][0]["ports"][0]["status"] == "Denied"
    assert rig.allows_of(status["virtualMachines"][0]["ports"][0]["grantId"]) == []
    table = rig.cli("alice", "status", request_id, check=True).stdout
    assert re.search(r"vm-web\s+3389\s+Denied", table) and "approval: Denied" in table, table


def test_still_pending_after_timeout_exits_5_and_the_request_keeps_waiting(rig: SourceRig) -> None:
    done = rig.cli(
        "alice",
        "request",
        "vm-web",
        "--port",
        "22",
        "--duration",
        "10m",
        "--source",
        "192.0.2.23/32",
        "--timeout",
        "2",
    )
    assert done.returncode == 5, done.stderr
    assert "still waiting for approval" in done.stderr
    request_id = request_id_of(done.stderr)
    assert rig.status("alice", request_id)["approval"]["status"] == "Pending"
    # The requester withdraws it: revoking a pending request ends it; it leaves bob's list.
    rig.cli("alice", "revoke", request_id, check=True)
    assert request_id not in rig.cli("bob", "approvals", "list", "-o", "tsv", check=True).stdout


def test_extend_on_a_vm_without_approval_moves_the_end(rig: SourceRig) -> None:
    done = rig.cli(
        "alice",
        "request",
        "vm-app",
        "--port",
        "22",
        "--duration",
        "10m",
        "--source",
        "198.51.100.30/32",
        "--user",
        "ops",
        check=True,
    )
    request_id = request_id_of(done.stderr)
    # --no-wait on a grant it reuses answers that grant's request (the one to extend or follow).
    again = rig.cli(
        "alice", "request", "vm-app", "--port", "22", "--source", "198.51.100.30/32", "--no-wait", check=True
    )
    assert again.stdout.strip() == request_id and f"reusing request {request_id}" in again.stderr
    before = rig.status("alice", request_id)["virtualMachines"][0]["ports"][0]
    extended = rig.cli("alice", "extend", request_id, "--duration", "30m")
    assert extended.returncode == 0, extended.stderr
    after = rig.status("alice", request_id)["virtualMachines"][0]["ports"][0]
    end = datetime.fromisoformat(after["endTimeUtc"].replace("Z", "+00:00"))
    assert abs(end - (datetime.now(UTC) + timedelta(minutes=30))) < timedelta(minutes=2)
    assert end > datetime.fromisoformat(before["endTimeUtc"].replace("Z", "+00:00"))
    assert (after["status"], after["grantId"]) == ("Initiated", before["grantId"])  # same grant, moved end
    assert f"ends {after['endTimeUtc']}" in extended.stdout, extended.stdout
    table = rig.cli("alice", "status", request_id, check=True).stdout
    assert after["endTimeUtc"] in table
    # Only the requester extends; beyond the policy maximum is refused, naming the field.
    eve = rig.cli("eve", "extend", request_id, "--duration", "40m")
    assert eve.returncode == 1 and eve.stderr.strip() == (
        "error: NotTheRequester: only the requester may extend a request"
    ), eve.stderr
    too_long = rig.cli("alice", "extend", request_id, "--duration", "5h")
    assert too_long.returncode == 1 and "(target: endTimeUtc)" in too_long.stderr, too_long.stderr
    assert any("198.51.100.30" in ",".join(rule.source_addresses or []) for rule in rig.classic_dnat())
    rig.cli("alice", "revoke", request_id, check=True)


def test_extend_on_an_approval_vm_waits_for_the_approver(rig: SourceRig) -> None:
    request_id = _pending_request(rig, "22", "192.0.2.24/32")
    rig.cli("bob", "approvals", "approve", request_id, check=True)
    extended = rig.cli("alice", "extend", request_id, "--duration", "40m")
    assert extended.returncode == 0, extended.stderr
    assert "waits for approval" in extended.stdout, extended.stdout
    assert re.search(
        re.escape(request_id) + r".*extension", rig.cli("bob", "approvals", "list", check=True).stdout
    )
    approved = rig.cli("bob", "approvals", "approve", request_id, "--comment", "fine")
    assert approved.returncode == 0, approved.stderr
    status = rig.status("alice", request_id)
    assert status["approval"]["extension"]["status"] == "Approved"
    assert (
        status["virtualMachines"][0]["ports"][0]["endTimeUtc"]
        == status["approval"]["extension"]["endTimeUtc"]
    )
    rig.cli("alice", "revoke", request_id, check=True)


def test_break_glass_request_opens_at_once_then_list_mine_and_the_review(rig: SourceRig) -> None:
    # Refused before any call without a reason; on a VM without approval the API's refusal shows.
    short = rig.cli("alice", "request", "vm-web", "--port", "22", "--break-glass", "--justification", "down")
    assert short.returncode == 2 and short.stdout == "", short.stderr
    assert short.stderr.startswith("error: --break-glass needs --justification"), short.stderr
    plain = rig.cli(
        "alice", "request", "vm-app", "--port", "22", "--break-glass", "--justification", "INC-77 app is down"
    )
    assert plain.returncode == 1 and plain.stdout == "", plain.stderr
    assert re.fullmatch(r"error: \S+: .*needs approval.*\(target: breakGlass\)", plain.stderr.strip()), (
        plain.stderr
    )

    # vm-web needs bob's approval, but break-glass opens it at once: the ssh line, no approver involved.
    done = rig.cli(
        "alice",
        "request",
        "vm-web",
        "--port",
        "22",
        "--duration",
        "20m",
        "--source",
        "192.0.2.77/32",
        "--break-glass",
        "--justification",
        "INC-77: production is down, need a shell",
        "--user",
        "ops",
        "--timeout",
        "60",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ssh -p 22 ops@{rig.estate.web_public_ip}", done.stdout
    request_id = request_id_of(done.stderr)
    assert f"BREAK-GLASS: request {request_id} opens at once, without approval" in done.stderr
    assert f"approvers told: {BOB.object_id}" in done.stderr
    assert "awaits an approver's review" in done.stderr, done.stderr
    status = rig.status("alice", request_id)
    assert status["approval"]["status"] == "BreakGlass" and status["approval"]["reviewRequired"] is True
    assert rig.allows_of(status["virtualMachines"][0]["ports"][0]["grantId"]), "open without approval"
    table = rig.cli("alice", "status", request_id, check=True).stdout
    assert "break-glass: waits for an approver's review" in table, table

    # alice's own requests, on every VM, newest first: this one leads; json is the API's records.
    mine = json.loads(rig.cli("alice", "list", "--mine", "-o", "json", check=True).stdout)
    assert mine[0]["requestId"] == request_id and mine[0]["approval"]["reviewRequired"]
    table = rig.cli("alice", "list", "--mine", "--active", "--vm", "vm-web", check=True).stdout
    assert re.search(re.escape(request_id) + r"\s+vm-web\s+22\s+Initiat", table), table
    assert request_id not in rig.cli("bob", "list", "--mine", "-o", "tsv", check=True).stdout

    listed = rig.cli("bob", "approvals", "list", check=True).stdout
    assert re.search(re.escape(request_id) + r".*vm-web\s+22\s+review \(break-glass, open\)", listed), listed
    own = rig.cli("alice", "approvals", "review", request_id)
    assert own.returncode == 1 and own.stderr.startswith("error: SelfApprovalNotAllowed: "), own.stderr
    reviewed = rig.cli("bob", "approvals", "review", request_id, "--comment", "checked the log")
    assert reviewed.returncode == 0, reviewed.stderr
    assert "break-glass: reviewed, Reviewed by bob@portcullis.local" in reviewed.stdout, reviewed.stdout
    assert "checked the log" in reviewed.stdout
    assert f"reviewed request {request_id}" in reviewed.stderr
    assert request_id not in rig.cli("bob", "approvals", "list", "-o", "tsv", check=True).stdout
    rig.cli("alice", "revoke", request_id, check=True)
