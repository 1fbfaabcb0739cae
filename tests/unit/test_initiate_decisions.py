"""Initiate's decisions with in-memory collaborators (tests/fakes.py): what is written, audited and
handed to enforcement, and what is refused, in milliseconds. The same paths against Azurite and the
emulator are in tests/integration/test_api_requests.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.actions.initiate import InitiateAccess, InitiateCommand
from shared.actions.refusal import Refusal, TransientFailureError
from shared.authz import INITIATE_ACTION
from shared.model import PolicyRef, PortStatus, Principal, PrincipalSource, StatusReason
from tests.fakes import FakeWorld, fake_services

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-0000000000c1"
REF = PolicyRef(SUB, "rg1", "westeurope", "default")
VM = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1"
ALICE = Principal("oid-alice", "alice", PrincipalSource.JWT)
POLICY = {
    "kind": "Basic",
    "properties": {
        "virtualMachines": [
            {
                "id": VM,
                "ports": [
                    {
                        "number": 22,
                        "protocol": "TCP",
                        "allowedSourceAddressPrefix": "*",
                        "maxRequestAccessDuration": "PT3H",
                    }
                ],
            }
        ]
    },
}


def ask(hours: int = 1, ticket: str | None = None, channel: str = "http") -> InitiateCommand:
    body = {
        "virtualMachines": [
            {
                "id": VM,
                "ports": [
                    {
                        "number": 22,
                        "endTimeUtc": (NOW + timedelta(hours=hours)).isoformat(),
                        "allowedSourceAddressPrefix": "203.0.113.7",
                    }
                ],
            }
        ],
        "justification": "patching",
    }
    return InitiateCommand(body=body, requester=ALICE, channel=channel, policy=REF, ticket_id=ticket)  # type: ignore[arg-type]


@pytest.fixture
def world() -> FakeWorld:
    world = fake_services(NOW)
    world.policies.add(REF, POLICY)
    world.roles.grant(ALICE.object_id, f"/subscriptions/{SUB}", INITIATE_ACTION)
    return world


def test_an_allowed_request_is_written_audited_and_handed_to_enforcement(world: FakeWorld) -> None:
    result = InitiateAccess(world.services)(ask())
    grant = result.request.grants[0]
    assert result.created and grant.status is PortStatus.INITIATING
    assert world.requests.get(grant.grant_id) is not None
    assert world.audit.names() == ["request.accepting", "request.accepted", "grant.initiating"]
    # Converge now, and again when the grant ends.
    assert world.notifier.notified == [(grant.grant_id, None), (grant.grant_id, grant.end_time)]


def test_a_longer_duration_than_the_policy_allows_is_refused_and_audited(world: FakeWorld) -> None:
    with pytest.raises(Refusal) as refused:
        InitiateAccess(world.services)(ask(hours=4))
    assert refused.value.status == 400
    assert world.requests.grants == {} and world.notifier.notified == []
    assert world.audit.names() == ["request.refused"]


def test_unreadable_rbac_opens_nothing(world: FakeWorld) -> None:
    world.roles.down = True
    with pytest.raises(Refusal) as refused:
        InitiateAccess(world.services)(ask())
    assert (refused.value.status, refused.value.code) == (503, "AuthorizationUnavailable")
    assert refused.value.message.endswith("nothing was opened, try again shortly")
    # Queued: transient, so the queue retries (and nothing is audited as refused).
    with pytest.raises(TransientFailureError):
        InitiateAccess(world.services)(ask(ticket="CHG-1", channel="queue"))
    assert world.requests.grants == {}


def test_a_caller_without_the_initiate_action_is_refused(world: FakeWorld) -> None:
    world.roles.assignments.clear()
    with pytest.raises(Refusal) as refused:
        InitiateAccess(world.services)(ask())
    assert (refused.value.status, refused.value.target) == (403, "virtualMachines[0].id")


def test_a_newer_request_supersedes_the_same_persons_older_grant(world: FakeWorld) -> None:
    older = InitiateAccess(world.services)(ask()).request.grants[0]
    world.services.clock = lambda: NOW + timedelta(minutes=1)
    InitiateAccess(world.services)(ask())
    superseded = world.requests.get(older.grant_id)
    assert superseded is not None and superseded.status is PortStatus.REVOKED
    assert superseded.status_reason is StatusReason.NEWER_REQUEST_INITIATED


def test_a_resent_ticket_is_the_same_request(world: FakeWorld) -> None:
    first = InitiateAccess(world.services)(ask(ticket="CHG-7", channel="queue"))
    again = InitiateAccess(world.services)(ask(ticket="CHG-7", channel="queue"))
    assert not again.created and again.request.record.request_id == first.request.record.request_id
    assert len(world.requests.grants) == 1
