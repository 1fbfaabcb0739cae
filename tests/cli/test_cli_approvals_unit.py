"""The approvals side of the command line with plain values shaped like the API's answers
(`JitNetworkAccessRequest` with `approval`): the live status line through Pending, why a waited-for
request ended, the approval block under `status`, the rows of `approvals list`, what approve/deny
and extend print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import portcullis_cli
import pytest
from portcullis_cli.commands import (
    approval_lines,
    decision_line,
    decision_summary,
    ended_reason,
    extension_summary,
    pending_row,
    port_summary,
)

pytestmark = pytest.mark.unit

BOB = "b0b00000-0000-4000-8000-000000000002"
VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-web"


def answer(
    port_status: str = "Pending", reason: str = "Approval required", **approval: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requestId": "r1",
        "startTimeUtc": "2026-03-02T09:00:00.2Z",
        "requestor": "alice@portcullis.local",
        "justification": "INC-1",
        "virtualMachines": [
            {
                "id": VM,
                "ports": [
                    {
                        "number": 22,
                        "status": port_status,
                        "statusReason": reason,
                        "endTimeUtc": "2026-03-02T09:30:00Z",
                    }
                ],
            }
        ],
    }
    if approval:
        body["approval"] = {
            "status": "Pending",
            "approvers": [BOB],
            "required": 1,
            "pendingUntilUtc": "2026-03-02T10:00:00Z",
            "decisions": [],
            "breakGlass": False,
            "reviewRequired": False,
            "review": None,
            "extension": None,
            **approval,
        }
    return body


def decision(verdict: str, comment: str | None = "ok") -> dict[str, Any]:
    return {
        "objectId": BOB,
        "displayName": "bob@portcullis.local",
        "verdict": verdict,
        "timeUtc": "2026-03-02T09:05:00Z",
        "comment": comment,
    }


def test_the_unit_tests_import_this_checkouts_cli() -> None:
    assert Path(portcullis_cli.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[2] / "cli")


def test_the_status_line_says_a_pending_port_waits_for_approval() -> None:
    assert port_summary(answer(status="Pending")) == ("22 Pending (waiting for approval)")
    assert port_summary(answer("Initiated", "UserRequested")) == "22 Initiated"


def test_a_denied_or_lapsed_request_has_ended_and_says_why() -> None:
    assert ended_reason(answer(status="Pending")) is None
    assert ended_reason(answer("Initiated", "UserRequested")) is None
    denied = answer("Denied", "Denied", status="Denied", decisions=[decision("Denied", "not now")])
    assert ended_reason(denied) == (
        f"was denied: Denied by bob@portcullis.local ({BOB}) at 2026-03-02T09:05:00Z: not now"
    )
    lapsed = answer("Expired", "ApprovalTimedOut", status="Expired")
    assert ended_reason(lapsed) == "lapsed: nobody approved it by 2026-03-02T10:00:00Z"
    # Revoked is not "ended" here: the wait returns and the caller says the grant is gone.
    assert ended_reason(answer("Revoked", "UserRequested")) is None


def test_decision_line_names_who_when_and_the_comment() -> None:
    assert decision_line(decision("Approved", None)) == (
        f"Approved by bob@portcullis.local ({BOB}) at 2026-03-02T09:05:00Z"
    )
    relayed = {**decision("Approved", "CAB-7"), "relayedBy": "changebot"}
    assert decision_line(relayed).endswith("(relayed by changebot): CAB-7")


def test_approval_lines_who_must_approve_who_decided_until_when() -> None:
    assert approval_lines(answer("Initiated", "UserRequested")) == []  # no approval rule: no block
    assert approval_lines(answer(status="Pending")) == [
        f"approval: Pending, 0 of 1 approval(s) from {BOB}",
        "  pending until 2026-03-02T10:00:00Z",
    ]
    approved = answer(
        "Initiated",
        "UserRequested",
        status="Approved",
        pendingUntilUtc=None,
        decisions=[decision("Approved")],
    )
    assert approval_lines(approved) == [
        f"approval: Approved, 1 of 1 approval(s) from {BOB}",
        f"  Approved by bob@portcullis.local ({BOB}) at 2026-03-02T09:05:00Z: ok",
    ]
    extension = {
        "endTimeUtc": "2026-03-02T10:10:00Z",
        "requestedAtUtc": "2026-03-02T09:20:00Z",
        "status": "Pending",
        "pendingUntilUtc": "2026-03-02T10:20:00Z",
        "decisions": [],
    }
    lines = approval_lines({**approved, "approval": {**approved["approval"], "extension": extension}})
    assert lines[-2:] == [
        "  extension to 2026-03-02T10:10:00Z: Pending",
        "    pending until 2026-03-02T10:20:00Z",
    ]
    glass = answer("Initiated", "UserRequested", status="BreakGlass", breakGlass=True, reviewRequired=True)
    assert approval_lines(glass)[-1].startswith("  break-glass: waits for an approver's review")


def test_pending_rows_show_the_asked_duration_to_the_minute_and_what_waits() -> None:
    row = pending_row(answer(status="Pending"))
    assert row == {
        "request": "r1",
        "requestor": "alice@portcullis.local",
        "vms": ["vm-web"],
        "ports": [22],
        "duration": "30m",  # 29m59.8s asked: the CLI's clock and the server's differ by a moment
        "pendingUntil": "2026-03-02T10:00:00Z",
        "waiting": "request",
        "justification": "INC-1",
    }
    extension = {"endTimeUtc": "2026-03-02T10:10:00Z", "status": "Pending", "pendingUntilUtc": "T"}
    row = pending_row(answer("Initiated", "UserRequested", status="Approved", extension=extension))
    assert (row["waiting"], row["pendingUntil"], row["duration"]) == (
        "extension to 2026-03-02T10:10:00Z",
        "T",
        "",
    )


def test_decision_summary_says_where_the_request_stands() -> None:
    approved = answer("Initiating", "UserRequested", status="Approved", decisions=[decision("Approved")])
    assert decision_summary(approved, "approve")[-1] == "ports: 22 Initiating (the rules open within seconds)"
    two_needed = answer(status="Pending", required=2, decisions=[decision("Approved")])
    summary = decision_summary(two_needed, "approve")
    assert summary[0] == f"approval: Pending, 1 of 2 approval(s) from {BOB}"
    assert summary[-1] == "ports: 22 Pending (waiting for approval)"
    denied = answer("Denied", "Denied", status="Denied", decisions=[decision("Denied")])
    assert decision_summary(denied, "deny")[-1] == "ports: 22 Denied"


def test_extension_summary_new_end_or_waiting_for_approval() -> None:
    assert extension_summary(answer("Initiated", "UserRequested"), "r1") == (
        "request r1: port 22 ends 2026-03-02T09:30:00Z"
    )
    extension = {"endTimeUtc": "2026-03-02T10:10:00Z", "status": "Pending", "pendingUntilUtc": "T"}
    waiting = answer("Initiated", "UserRequested", status="Approved", extension=extension)
    assert extension_summary(waiting, "r1").startswith(
        "request r1: the extension to 2026-03-02T10:10:00Z waits for approval (until T)"
    )
