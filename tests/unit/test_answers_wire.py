"""Answers keep their exact wire shape: field names, Defender's casing, and `null` where a field is
sent as null versus absent where it is left out. The expected JSON (answers_wire.json beside this
file) was written by the hand-built dict serialisers before the answers became pydantic models."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.answers import Answer, ImportReport, SkippedPolicy
from shared.api.http import error_response
from shared.api.records import grant_to_wire, request_answer
from shared.compliance import StoredFinding
from shared.defender import parse_policy_body, policy_to_wire, request_to_wire
from shared.grants import RequestRecord, StoredRequest
from shared.model import (
    DomainError,
    Grant,
    PolicyRef,
    PortStatus,
    Principal,
    PrincipalSource,
    StatusReason,
    TargetState,
    TransportProtocol,
    VmRef,
)

EXPECTED = json.loads((Path(__file__).with_name("answers_wire.json")).read_text(encoding="utf-8"))
START = datetime(2030, 1, 1, 12, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-000000000001"
POLICY = PolicyRef(SUB, "rg", "westeurope", "default")
ALICE = Principal("oid-alice", "alice@contoso.com", PrincipalSource.JWT)


def grants() -> list[Grant]:
    vm1, vm2 = VmRef(SUB, "rg", "vm1"), VmRef(SUB, "rg", "vm2")
    plain = Grant(
        "g1", "r1", POLICY, vm1, 22, TransportProtocol.TCP, ("203.0.113.7",), START,
        START + timedelta(hours=1), ALICE, None, None,
    )  # fmt: skip
    behind_firewall = Grant(
        "g2", "r1", POLICY, vm1, 3389, TransportProtocol.TCP, ("203.0.113.0/24", "198.51.100.0/24"),
        START, START + timedelta(hours=2), ALICE, "maintenance", "CHG-1", PortStatus.INITIATED, None,
        {"nsg|/x": TargetState.APPLIED, "fw|/y": TargetState.APPLIED}, 50022, "192.0.2.10",
    )  # fmt: skip
    revoked = Grant(
        "g3", "r1", POLICY, vm2, 22, TransportProtocol.ANY, ("10.0.0.0/8",), START,
        START + timedelta(hours=3), ALICE, "maintenance", None, PortStatus.REVOKED,
        StatusReason.USER_REQUESTED, {}, None, "192.0.2.20",
    )  # fmt: skip
    return [plain, behind_firewall, revoked]


def actual() -> dict[str, Any]:
    every = grants()
    record = RequestRecord("r1", POLICY, ALICE, START, "maintenance", "CHG-1", "fp")
    bare = RequestRecord("r2", POLICY, ALICE, START, None, None, "fp")
    finding = StoredFinding(
        "nsg|/subscriptions/s/nsg", "ForeignRuleOpensPort", "allow-ssh", "", 22, "d", START, START
    )
    report = ImportReport(adopted=["/a"], unchanged=[], skipped=[SkippedPolicy(id="/b", reason="why")])
    answers = {
        "grants": [grant_to_wire(g, START + timedelta(minutes=90)) for g in every],
        "request": request_answer(StoredRequest(record, every)),
        "request_bare": request_answer(StoredRequest(bare, every[:1])),
        "defender_request": request_to_wire(every, start_time=START, requestor="alice", justification="j"),
        "defender_request_bare": request_to_wire(
            every[:1], start_time=START, requestor="alice", justification=None
        ),
        "finding": finding.to_json(),
        "import_report": report,
        "policy": policy_answer(every),
        "errors": [json.loads(e.get_body()) for e in errors()],
    }
    return {name: wire(answer) for name, answer in answers.items()}


def wire(answer: Any) -> Any:
    if isinstance(answer, list):
        return [wire(item) for item in answer]
    return answer.wire() if isinstance(answer, Answer) else answer


def errors() -> list[Any]:
    several = [DomainError("a", "bad"), DomainError("b", "worse", code="Other")]
    return [
        error_response(404, "RequestNotFound", "request r9 does not exist"),
        error_response(400, "InvalidRequestContent", "body: not JSON", "body", several[:1]),
        error_response(400, "InvalidRequestContent", "a: bad; b: worse", "a", several),
        error_response(401, "AuthenticationFailed", "no token"),
    ]


def policy_answer(every: list[Grant]) -> Any:
    body = {
        "properties": {
            "virtualMachines": [
                {
                    "id": every[0].vm.id,
                    "ports": [
                        {
                            "number": 22,
                            "protocol": "TCP",
                            "allowedSourceAddressPrefix": "*",
                            "maxRequestAccessDuration": "PT3H",
                        }
                    ],
                    "publicIpAddress": "198.51.100.4",
                }
            ]
        }
    }
    _, canonical = parse_policy_body(body, POLICY)
    history = [request_to_wire(every, start_time=START, requestor="alice", justification=None).wire()]
    return policy_to_wire(POLICY, canonical, history)


def test_answers_keep_their_wire_shape() -> None:
    assert json.loads(json.dumps(actual(), default=str)) == EXPECTED


if __name__ == "__main__":  # regenerate only when a wire change is intended
    print(json.dumps(actual(), indent=1, default=str))
