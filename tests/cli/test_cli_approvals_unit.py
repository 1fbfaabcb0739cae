"""The approvals side of the command line with plain values shaped like the API's answers
(`JitNetworkAccessRequest` with `approval`): the live status line through Pending, why a waited-for
request ended, the approval block under `status`, the rows of `approvals list` (pending and awaiting
review), what approve/deny/review and extend print, `list --mine`'s rows from request records and
how it follows `nextLink`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import portcullis_cli
import pytest
from portcullis_cli import main
from portcullis_cli.api import next_params
from portcullis_cli.commands import (
    MIN_BREAK_GLASS_REASON,
    UsageError,
    approval_lines,
    break_glass_notice,
    check_break_glass,
    decision_line,
    decision_summary,
    ended_reason,
    extension_summary,
    initiate_body,
    pending_row,
    port_summary,
    request_rows,
    review_row,
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


def test_a_break_glass_request_awaiting_review_is_a_row_saying_so() -> None:
    glass = answer("Initiated", "UserRequested", status="BreakGlass", breakGlass=True, reviewRequired=True)
    row = review_row(glass)
    assert (row["request"], row["vms"], row["ports"]) == ("r1", ["vm-web"], [22])
    assert (row["waiting"], row["duration"], row["pendingUntil"]) == ("review (break-glass, open)", "", "")
    assert pending_row(answer(status="Pending"))["waiting"] == "request"


def test_review_takes_a_request_and_an_optional_comment() -> None:
    parser = main.build_parser()
    args = parser.parse_args(["approvals", "review", "r1", "--comment", "checked"])
    assert (args.approvals_command, args.request_id, args.comment) == ("review", "r1", "checked")
    assert parser.parse_args(["approvals", "review", "r1"]).comment is None
    reviewed = answer(
        "Initiated",
        "UserRequested",
        status="BreakGlass",
        breakGlass=True,
        review={**decision("Reviewed", "checked")},
    )
    lines = decision_summary(reviewed, "review")
    assert any(line.startswith("  break-glass: reviewed, Reviewed by bob@portcullis.local") for line in lines)


def test_list_mine_rows_one_per_port_filtered_by_vm_and_activity() -> None:
    other = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-db"
    records = [
        answer("Initiated", "UserRequested"),
        {**answer("Revoked", "Expired"), "requestId": "r0"},
        {
            **answer("Initiated", "UserRequested"),
            "requestId": "r2",
            "virtualMachines": [
                {
                    "id": other,
                    "ports": [
                        {
                            "number": 22,
                            "status": "Initiated",
                            "statusReason": "UserRequested",
                            "endTimeUtc": "2026-03-02T09:30:00Z",
                            "allowedSourceAddressPrefixes": ["192.0.2.1", "192.0.2.2"],
                            "connectAddress": "203.0.113.9",
                            "connectPort": 50022,
                        }
                    ],
                }
            ],
        },
    ]
    rows = request_rows(records, None, active=False)
    assert [(r["request"], r["vm"], r["status"]) for r in rows] == [
        ("r1", "vm-web", "Initiated"),
        ("r0", "vm-web", "Revoked"),
        ("r2", "vm-db", "Initiated"),
    ]
    assert rows[2]["source"] == ["192.0.2.1", "192.0.2.2"] and rows[2]["connect"] == "203.0.113.9:50022"
    assert [r["request"] for r in request_rows(records, VM.upper(), active=True)] == ["r1"]


def test_next_link_becomes_the_next_calls_query() -> None:
    link = "/api/requests?requester=me&active=true&%24skipToken=98|ab"
    assert next_params(link) == {"requester": "me", "active": "true", "$skipToken": "98|ab"}
    assert next_params(None) is None and next_params("") is None


# ---- break-glass from the command line ----

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_break_glass_arguments_become_the_initiate_body() -> None:
    parser = main.build_parser()
    args = parser.parse_args(
        [
            "request",
            "vm-web",
            "--port",
            "22",
            "--break-glass",
            "--justification",
            "INC-9 prod down",
            "--ticket",
            "INC-9",
        ]
    )
    assert check_break_glass(args) is True
    body = initiate_body(args, VM, "192.0.2.1/32", {22: NOW + timedelta(minutes=30)})
    assert body == {
        "virtualMachines": [
            {
                "id": VM,
                "ports": [
                    {
                        "number": 22,
                        "endTimeUtc": "2026-03-02T09:30:00.000000Z",
                        "allowedSourceAddressPrefix": "192.0.2.1/32",
                    }
                ],
            }
        ],
        "justification": "[INC-9] INC-9 prod down",
        "breakGlass": True,
    }
    # Without the flag the body has no breakGlass at all (Defender's own shape), and nothing is checked.
    plain = parser.parse_args(["request", "vm-web", "--port", "22"])
    assert check_break_glass(plain) is False
    assert "breakGlass" not in initiate_body(plain, VM, "192.0.2.1/32", {22: NOW})
    assert "justification" not in initiate_body(plain, VM, "192.0.2.1/32", {22: NOW})
    # ssh, rdp and exec take it too (the same access options).
    for argv in (
        ["ssh", "vm-web", "--break-glass", "--justification", "INC-9 prod down"],
        ["rdp", "vm-web", "--break-glass", "--justification", "INC-9 prod down"],
        ["exec", "--vm", "vm-web", "--port", "22", "--break-glass", "--justification", "INC-9 prod down"],
    ):
        assert check_break_glass(parser.parse_args(argv)) is True


@pytest.mark.parametrize(
    "extra",
    [[], ["--justification", "short"], ["--justification", "   too short   "], ["--ticket", "INC-123456789"]],
)
def test_break_glass_without_a_reason_of_10_characters_is_refused_locally(extra: list[str]) -> None:
    args = main.build_parser().parse_args(["request", "vm-web", "--port", "22", "--break-glass", *extra])
    with pytest.raises(UsageError, match=r"--break-glass needs --justification .* at least 10 characters"):
        check_break_glass(args)


def test_the_cli_minimum_reason_is_the_apis() -> None:
    from shared.approval import MIN_BREAK_GLASS_REASON as API_MINIMUM

    assert MIN_BREAK_GLASS_REASON == API_MINIMUM


def test_break_glass_without_a_reason_exits_2_before_configuration_or_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not configured, not signed in: the refusal still comes first (exit 2, not 6 or 3).
    monkeypatch.setenv("PORTCULLIS_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("PORTCULLIS_ENDPOINT", raising=False)
    for argv in (
        ["request", "vm-web", "--port", "22", "--break-glass"],
        ["ssh", "vm-web", "--break-glass", "--justification", "urgent"],
    ):
        assert main.main(argv) == main.USAGE
        error = capsys.readouterr().err
        assert error.startswith("error: --break-glass needs --justification"), error


def test_break_glass_notice_says_opened_without_approval_who_was_told_and_the_review() -> None:
    status = answer("Initiated", "UserRequested", status="BreakGlass", breakGlass=True, reviewRequired=True)
    assert break_glass_notice("r1", status) == [
        "BREAK-GLASS: request r1 opens at once, without approval",
        f"  approvers told: {BOB}",
        "  it awaits an approver's review (flagged until then): `portcullis status r1`",
    ]
    reviewed = answer(
        "Initiated", "UserRequested", status="BreakGlass", breakGlass=True, reviewRequired=False
    )
    assert len(break_glass_notice("r1", reviewed)) == 2
