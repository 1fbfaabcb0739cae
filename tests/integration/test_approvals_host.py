"""Approvals through the local host (devhost + Azurite + the ARM emulator, dev users signed in with the
local issuer's tokens; issue 13's "done when"): approval required -> Pending and nothing opened;
self-approval and a non-approver refused; two approvals by distinct people open the grant; a denial
-> Denied, nothing opened; a lapse -> Expired (ApprovalTimedOut); an approval after the requester lost
their role refused; an extension with the NSG rule never absent (polled through the SDK during the
switch); break-glass; scheduled access (nothing opens before `startTimeUtc`); queued requests, with
and without a trusted sender's prior approval.

One stack for the module; each test seeds its own resource group (its own estate and policy), so
one test's grants never supersede another's. The lapse request is made by the module's first test
and checked by its last (pendingTimeout PT1M, the lapse timer runs every 15 s)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localrig.appclient import AppClient
from localrig.devusers import ADMIN, ALICE, BOB, CAROL, EVE, DevUser
from localrig.emulator_client import EmulatorClient
from localrig.estates.roles import OWNER_ROLE, READER_ROLE, assign_role, grant_roles
from localrig.estates.sample import Estate
from localrig.estates.snapshot import nsg_rules, ports_of, wait_for
from localrig.stack import Stack, start_stack
from shared import plan
from shared.audit import TableAuditTrail
from shared.events import EventId
from shared.settings import load_settings
from shared.storage import queue, send

TRUSTED_SENDER = "changebot"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        # RBAC is read afresh on every decision, so the "lost their role" test sees the removal.
        "PORTCULLIS_RBAC_CACHE_SECONDS": "0",
        "PORTCULLIS_TRUSTED_APPROVAL_SENDERS": TRUSTED_SENDER,
    }
    with start_stack(tmp_path_factory.mktemp("approvals-stack"), extra_env=env) as running:
        yield running


@dataclass
class World:
    stack: Stack
    arm: EmulatorClient
    estate: Estate

    def app(self, user: DevUser) -> AppClient:
        return AppClient(self.stack.api_url, user, self.stack.headers_for)

    def our_allows(self, nsg: str = "nsg-web-nic") -> list[dict[str, Any]]:
        return [
            r
            for r in nsg_rules(self.arm, self.estate, nsg)
            if r["properties"]["access"] == "Allow"
            and plan.owns_rule(r["name"], r["properties"].get("description"))
        ]


_ROLES: dict[str, str] = {}


def assign(arm: EmulatorClient, scope: str, role_id: str, user: DevUser) -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.mgmt.authorization import AuthorizationManagementClient

    # An existing one: the subscription-wide assignments of an earlier test's world.
    with contextlib.suppress(ResourceExistsError):
        auth = arm.client(AuthorizationManagementClient)
        assign_role(auth, arm.subscription_id, scope, role_id, user.object_id)


def new_world(stack: Stack, approval: dict[str, Any] | None) -> World:
    """A resource group of its own: the estate, alice's JIT role on its VMs, bob and carol as Readers
    (they may read the policy they decide), and the policy with `approval` on vm-web."""
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
    estate = Estate(arm.subscription_id, f"rg-appr-{uuid.uuid4().hex[:8]}")
    arm.seed(estate.resources())
    if "requester" not in _ROLES:
        grant_roles(arm, estate)
        _ROLES["requester"] = next(
            a.role_definition_id.rsplit("/", 1)[1]
            for a in _assignments(arm, estate.vm_id(estate.vm_web))
            if a.principal_id == ALICE.object_id
        )
    else:
        rg_scope = f"/subscriptions/{arm.subscription_id}/resourceGroups/{estate.resource_group}"
        assign(arm, rg_scope, OWNER_ROLE, ADMIN)
        for vm in (estate.vm_web, estate.vm_app, estate.vm_ops):
            assign(arm, estate.vm_id(vm), _ROLES["requester"], ALICE)
    rg_scope = f"/subscriptions/{arm.subscription_id}/resourceGroups/{estate.resource_group}"
    for approver in (BOB, CAROL):
        assign(arm, rg_scope, READER_ROLE, approver)
    body = estate.policy_body()
    if approval is not None:
        body["properties"]["virtualMachines"][0]["portcullis"] = {"approval": approval}
    world = World(stack, arm, estate)
    world.app(ADMIN).put_policy(estate, body)
    return world


def _assignments(arm: EmulatorClient, scope: str) -> list[Any]:
    from azure.mgmt.authorization import AuthorizationManagementClient

    return list(arm.client(AuthorizationManagementClient).role_assignments.list_for_scope(scope))


def initiate(world: World, seconds: int = 600, **extra: Any) -> dict[str, Any]:
    end = datetime.now(UTC) + timedelta(seconds=seconds)
    body = {
        "virtualMachines": [
            {
                "id": world.estate.vm_id(world.estate.vm_web),
                "ports": [
                    {
                        "number": 22,
                        "endTimeUtc": end.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                        "allowedSourceAddressPrefix": "203.0.113.7",
                    }
                ],
            }
        ],
        "justification": "incident INC-4711: check the disk",
        **extra,
    }
    path = f"{AppClient.policy_path(world.estate)}/initiate?api-version=2020-01-01"
    return world.app(ALICE).ok("POST", path, body)  # type: ignore[no-any-return]


def status_of(world: World, request_id: str, user: DevUser = ALICE) -> dict[str, Any]:
    return world.app(user).request_status(request_id)  # type: ignore[no-any-return]


def port_status(world: World, request_id: str) -> tuple[str, str]:
    port = ports_of(status_of(world, request_id))[0]
    return port["status"], port["statusReason"]


def decide(
    world: World, user: DevUser, request_id: str, verb: str, comment: str | None = None
) -> tuple[int, Any]:
    body = {"comment": comment} if comment is not None else None
    return world.app(user).call("POST", f"/requests/{request_id}/{verb}", body)


def audit_of(stack: Stack, subject: str) -> list[Any]:
    return TableAuditTrail(load_settings(stack.env)).for_subject(subject)


def grant_events(stack: Stack, request_id: str, kind: str) -> list[dict[str, Any]]:
    """The `com.portcullis.grant.<kind>` events about the request the local sink received (one per
    channel), waiting for the first: deliveries run on the host's events queue."""
    sink = stack.webhook_sink
    assert sink is not None, "start_stack points notifications at its webhook sink"
    wanted = f"com.portcullis.grant.{kind}"
    return wait_for(  # type: ignore[no-any-return]
        lambda: [r["event"] for r in sink.received_for(request_id) if r["event"]["type"] == wanted],
        20,
        f"the {wanted} event",
    )


ONE = {"approvers": [BOB.object_id], "required": 1, "pendingTimeout": "PT1H"}
TWO = {"approvers": [BOB.object_id, CAROL.object_id], "required": 2, "pendingTimeout": "PT1H"}


@pytest.fixture(scope="module")
def lapsing(stack: Stack) -> tuple[World, str, float]:
    """A request that nobody decides (pendingTimeout PT1M), made early so its lapse overlaps the
    other tests."""
    world = new_world(stack, {**ONE, "pendingTimeout": "PT1M"})
    return world, initiate(world)["requestId"], time.monotonic()


SCHEDULE_AHEAD = timedelta(seconds=45)


@pytest.fixture(scope="module")
def scheduled(stack: Stack) -> tuple[World, str, datetime]:
    """A request on a VM without approval, starting 45 s from now (made early, checked last)."""
    world = new_world(stack, None)
    start = (datetime.now(UTC) + SCHEDULE_AHEAD).replace(microsecond=0)
    answer = initiate(world, seconds=45 + 300, startTimeUtc=start.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return world, answer["requestId"], start


def test_approval_required_is_pending_and_opens_nothing(stack: Stack, lapsing: Any, scheduled: Any) -> None:
    world = new_world(stack, TWO)
    answer = initiate(world)
    assert [(p["status"], p["statusReason"]) for p in ports_of(answer)] == [("Pending", "Approval required")]
    request_id = answer["requestId"]
    shown = status_of(world, request_id)
    assert shown["approval"]["status"] == "Pending"
    assert shown["approval"]["approvers"] == [BOB.object_id, CAROL.object_id]
    assert shown["approval"]["required"] == 2 and shown["approval"]["pendingUntilUtc"]
    # Bob's list shows it; alice's (the requester) does not.
    waiting = world.app(BOB).ok("GET", "/requests?status=Pending&approver=me")
    assert request_id in [r["requestId"] for r in waiting["value"]]
    assert request_id not in [
        r["requestId"] for r in world.app(ALICE).ok("GET", "/requests?status=Pending&approver=me")["value"]
    ]
    status, error = world.app(BOB).call("GET", "/requests?status=Open&approver=me")
    assert status == 400 and error["error"]["target"] == "status"
    time.sleep(3)  # enforcement has had time to act, had it been handed anything
    assert world.our_allows() == [] and world.our_allows("nsg-web-subnet") == []
    assert port_status(world, request_id) == ("Pending", "Approval required")
    assert [e for e in audit_of(stack, request_id) if e.event == EventId.REQUEST_PENDING]


def test_self_approval_and_a_non_approver_are_refused(stack: Stack) -> None:
    world = new_world(stack, {**ONE, "approvers": [BOB.object_id, ALICE.object_id]})
    request_id = initiate(world)["requestId"]
    status, error = decide(world, ALICE, request_id, "approve")
    assert (status, error["error"]["code"]) == (403, "SelfApprovalNotAllowed")
    status, error = decide(world, EVE, request_id, "approve")
    assert (status, error["error"]["code"]) == (403, "NotAnApprover")
    status, error = decide(world, CAROL, request_id, "deny")
    assert (status, error["error"]["code"]) == (403, "NotAnApprover")
    assert port_status(world, request_id) == ("Pending", "Approval required")
    refused = [e for e in audit_of(stack, request_id) if e.event == EventId.APPROVAL_REFUSED]
    assert {(e.actor, e.details["code"]) for e in refused} == {
        (ALICE.object_id, "SelfApprovalNotAllowed"),
        (EVE.object_id, "NotAnApprover"),
        (CAROL.object_id, "NotAnApprover"),
    }


def test_two_approvals_by_distinct_people_open_the_grant(stack: Stack) -> None:
    world = new_world(stack, TWO)
    request_id = initiate(world)["requestId"]
    status, after_bob = decide(world, BOB, request_id, "approve", "looks fine")
    assert status == 200 and ports_of(after_bob)[0]["status"] == "Pending"
    status, again = decide(world, BOB, request_id, "approve")
    assert (status, again["error"]["code"]) == (409, "AlreadyDecided")
    time.sleep(2)
    assert world.our_allows() == []
    approved_at = datetime.now(UTC)
    assert decide(world, CAROL, request_id, "approve")[0] == 200
    wait_for(lambda: port_status(world, request_id)[0] == "Initiated", 30, "the port Initiated")
    assert len(world.our_allows()) == 1 and len(world.our_allows("nsg-web-subnet")) == 1
    shown = status_of(world, request_id)
    decisions = shown["approval"]["decisions"]
    assert [(d["objectId"], d["verdict"]) for d in decisions] == [
        (BOB.object_id, "Approved"),
        (CAROL.object_id, "Approved"),
    ]
    assert decisions[0]["comment"] == "looks fine"
    # The window starts at approval: about 10 minutes from the second approval, not from the request.
    end = datetime.fromisoformat(ports_of(shown)[0]["endTimeUtc"].replace("Z", "+00:00"))
    assert abs((end - approved_at) - timedelta(seconds=600)).total_seconds() < 30
    approved = [e for e in audit_of(stack, request_id) if e.event == EventId.REQUEST_APPROVED]
    assert [len(e.details["approvers"]) for e in approved] == [1, 2]
    # The notification names both approvers.
    sink = stack.webhook_sink
    if sink is not None:
        assert sink.wait_for(request_id, "com.portcullis.request.approved", timeout=20)
        approvals = wait_for(
            lambda: [
                r["event"]
                for r in sink.received_for(request_id)
                if r["event"]["type"] == "com.portcullis.request.approved"
                and len(r["event"]["data"]["approvers"]) == 2
            ],
            20,
            "the approved event naming both approvers",
        )
        assert {a["objectId"] for a in approvals[0]["data"]["approvers"]} == {BOB.object_id, CAROL.object_id}
        assert approvals[0]["data"]["requester"]["objectId"] == ALICE.object_id


def test_a_denial_ends_it_as_denied_and_opens_nothing(stack: Stack) -> None:
    world = new_world(stack, ONE)
    request_id = initiate(world)["requestId"]
    assert decide(world, BOB, request_id, "deny", "not during the freeze")[0] == 200
    assert port_status(world, request_id) == ("Denied", "Denied")
    assert status_of(world, request_id)["approval"]["decisions"][0]["comment"] == "not during the freeze"
    assert decide(world, BOB, request_id, "approve")[0] == 409
    time.sleep(2)
    assert world.our_allows() == []
    denied = [e for e in audit_of(stack, request_id) if e.event == EventId.REQUEST_DENIED]
    assert denied and denied[0].actor == BOB.object_id


def test_an_approval_after_the_requester_lost_their_role_is_refused(stack: Stack) -> None:
    from azure.mgmt.authorization import AuthorizationManagementClient

    world = new_world(stack, ONE)
    request_id = initiate(world)["requestId"]
    auth = world.arm.client(AuthorizationManagementClient)
    for assignment in _assignments(world.arm, world.estate.vm_id(world.estate.vm_web)):
        if assignment.principal_id == ALICE.object_id:
            auth.role_assignments.delete_by_id(assignment.id)
    status, error = decide(world, BOB, request_id, "approve")
    assert (status, error["error"]["code"]) == (403, "RequesterNotAuthorized")
    assert port_status(world, request_id) == ("Pending", "Approval required")
    time.sleep(2)
    assert world.our_allows() == []


def test_an_extension_keeps_the_rule_without_a_gap(stack: Stack) -> None:
    """Extend shortly before the end, approved by bob; the NSG is read through the SDK every ~0.1 s
    from before the extension until past the original end: our rule is there in every read."""
    from azure.mgmt.network import NetworkManagementClient

    world = new_world(stack, ONE)
    request_id = initiate(world, seconds=25)["requestId"]
    assert decide(world, BOB, request_id, "approve")[0] == 200
    wait_for(lambda: port_status(world, request_id)[0] == "Initiated", 20, "the port Initiated")
    original_end = datetime.fromisoformat(
        ports_of(status_of(world, request_id))[0]["endTimeUtc"].replace("Z", "+00:00")
    )
    network = world.arm.client(NetworkManagementClient)
    reads: list[bool] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            nsg = network.network_security_groups.get(world.estate.resource_group, "nsg-web-nic")
            reads.append(
                any(
                    r.access == "Allow" and plan.owns_rule(r.name or "", r.description)
                    for r in nsg.security_rules or []
                )
            )
            time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        new_end = original_end + timedelta(minutes=5)
        status, asked = world.app(ALICE).call(
            "POST", f"/requests/{request_id}/extend", {"endTimeUtc": new_end.isoformat()}
        )
        assert status == 200 and asked["approval"]["extension"]["status"] == "Pending"
        status, error = world.app(ALICE).call(
            "POST",
            f"/requests/{request_id}/extend",
            {"endTimeUtc": (original_end + timedelta(hours=4)).isoformat()},
        )
        assert (status, error["error"]["target"]) == (400, "endTimeUtc")  # beyond PT3H from the start
        assert decide(world, BOB, request_id, "approve", "ok, 5 more minutes")[0] == 200
        # Past the original end: its converge message has had its turn; then the expiry sweep runs (on
        # demand, through the host's admin API) and the reads go on a little longer.
        wait_for(
            lambda: datetime.now(UTC) > original_end + timedelta(seconds=3), 40, "the original end to pass"
        )
        stack.run_timer_now("jit_expiry_sweep")
        time.sleep(3)
    finally:
        stop.set()
        poller.join(5)
    assert reads and all(reads), f"our rule was absent in {reads.count(False)} of {len(reads)} reads"
    print(f"extension: our rule present in all {len(reads)} NSG reads across the switch and the original end")
    port = ports_of(status_of(world, request_id))[0]
    assert port["status"] == "Initiated"
    assert datetime.fromisoformat(port["endTimeUtc"].replace("Z", "+00:00")) == new_end
    rule = world.our_allows()[0]
    assert new_end.strftime("%Y-%m-%dT%H:%M") in rule["properties"]["description"]
    grant_id = port["grantId"]
    extended = [e for e in audit_of(stack, grant_id) if e.event == EventId.GRANT_EXTENDED]
    assert extended and extended[0].details["approvers"][0]["objectId"] == BOB.object_id
    world.app(ALICE).ok("DELETE", f"/requests/{request_id}")
    # Every grant event names who approved the request (issue 13 item 9), as request.approved does:
    # bob on opened and revoked; grant.extended names the extension's approver, bob again.
    sink = stack.webhook_sink
    assert sink is not None
    # The request's approval and its extension's, each on the webhook and on Event Grid (delivered
    # through the events queue: wait for all four).
    approved = wait_for(
        lambda: (
            len(
                found := [
                    r["event"]["data"]["approvers"]
                    for r in sink.received_for(request_id)
                    if r["event"]["type"] == "com.portcullis.request.approved"
                ]
            )
            >= 4
            and found
        ),
        20,
        "both approvals' events on both channels",
    )
    bob = approved[0]
    assert [a["objectId"] for a in bob] == [BOB.object_id] and bob[0]["displayName"]
    assert approved == [bob] * len(approved)  # the request and its extension, each approved by bob
    for kind in ("opened", "extended", "revoked"):
        events = grant_events(stack, request_id, kind)
        assert [e["data"]["approvers"] for e in events] == [bob] * len(events), kind


def test_break_glass_opens_at_once_tells_the_approvers_and_waits_for_review(stack: Stack) -> None:
    world = new_world(stack, {**TWO, "breakGlass": True})
    answer = initiate(world, breakGlass=True, justification="production down, INC-9000: need a shell now")
    request_id = answer["requestId"]
    wait_for(lambda: port_status(world, request_id)[0] == "Initiated", 30, "the port Initiated")
    shown = status_of(world, request_id, BOB)
    assert shown["approval"]["breakGlass"] and shown["approval"]["reviewRequired"]
    glass = [e for e in audit_of(stack, request_id) if e.event == EventId.REQUEST_BREAK_GLASS]
    assert {a["objectId"] for a in glass[0].details["approvers"]} == {BOB.object_id, CAROL.object_id}
    sink = stack.webhook_sink
    if sink is not None:
        event = sink.wait_for(request_id, "com.portcullis.request.break_glass", timeout=20)
        assert event
    assert decide(world, ALICE, request_id, "review")[0] == 403
    # Both approvers find it awaiting review; the requester does not (it is not hers to review).
    for user, listed in ((BOB, True), (CAROL, True), (ALICE, False)):
        awaiting = world.app(user).ok("GET", "/requests?status=ReviewRequired&approver=me")["value"]
        assert (request_id in [r["requestId"] for r in awaiting]) is listed, user.name
    status, reviewed = decide(world, CAROL, request_id, "review", "checked the session log")
    assert status == 200 and not reviewed["approval"]["reviewRequired"]
    assert reviewed["approval"]["review"]["objectId"] == CAROL.object_id
    awaiting = world.app(BOB).ok("GET", "/requests?status=ReviewRequired&approver=me")["value"]
    assert request_id not in [r["requestId"] for r in awaiting]
    world.app(ALICE).ok("DELETE", f"/requests/{request_id}")
    # Its grant events say what its request events say: every listed approver until the review
    # (request.break_glass), then the reviewer (request.reviewed).
    revoked = grant_events(stack, request_id, "revoked")
    assert [[a["objectId"] for a in e["data"]["approvers"]] for e in revoked] == [[CAROL.object_id]] * len(
        revoked
    )
    opened = grant_events(
        stack, request_id, "opened"
    )  # published as it opened, most likely before the review
    named = {frozenset(a["objectId"] for a in e["data"]["approvers"]) for e in opened}
    assert named <= {frozenset({BOB.object_id, CAROL.object_id}), frozenset({CAROL.object_id})}, named


def test_my_requests_come_in_one_call_newest_first_and_only_mine(stack: Stack) -> None:
    """`GET /api/requests?requester=me`: every VM in one call, the record `GET /api/requests/{id}`
    answers, `active=true` without a withdrawn one; the index's `ActiveUntil` follows an extension
    (read through the store on Azurite), and its pages follow one another without a gap."""
    from shared.grants import TableGrantStore

    world = new_world(stack, ONE)
    withdrawn = initiate(world)["requestId"]
    world.app(ALICE).ok("DELETE", f"/requests/{withdrawn}")
    waiting = initiate(world)["requestId"]
    start = datetime.now(UTC)
    body = {
        "virtualMachines": [
            {
                "id": world.estate.vm_id(world.estate.vm_ops),
                "ports": [
                    {
                        "number": 22,
                        "endTimeUtc": (start + timedelta(minutes=10)).isoformat(),
                        "allowedSourceAddressPrefix": "203.0.113.7",
                    }
                ],
            }
        ],
    }
    path = f"{AppClient.policy_path(world.estate)}/initiate?api-version=2020-01-01"
    opened = world.app(ALICE).ok("POST", path, body)["requestId"]
    later = (start + timedelta(minutes=150)).isoformat()
    world.app(ALICE).ok("POST", f"/requests/{opened}/extend", {"endTimeUtc": later})

    mine = world.app(ALICE).ok("GET", "/requests?requester=me")
    ids = [r["requestId"] for r in mine["value"]]
    assert ids.index(opened) < ids.index(waiting) < ids.index(withdrawn)
    assert next(r for r in mine["value"] if r["requestId"] == waiting) == status_of(world, waiting)
    vms = {
        vm["id"] for r in mine["value"] if r["requestId"] in (opened, waiting) for vm in r["virtualMachines"]
    }
    assert vms == {world.estate.vm_id(world.estate.vm_ops), world.estate.vm_id(world.estate.vm_web)}
    active = [
        r["requestId"] for r in world.app(ALICE).ok("GET", "/requests?requester=me&active=true")["value"]
    ]
    assert opened in active and waiting in active and withdrawn not in active

    store = TableGrantStore(load_settings(stack.env))
    in_ninety = datetime.now(UTC) + timedelta(minutes=90)
    hinted = [
        s.record.request_id for s in store.list_for_requester(ALICE.object_id, active_at=in_ninety).requests
    ]
    assert opened in hinted and waiting not in hinted  # moved to the extended end; waiting's is 1 h
    paged: list[str] = []
    cursor: str | None = None
    for _ in range(len(ids) + 1):
        page = store.list_for_requester(ALICE.object_id, after=cursor, limit=2)
        paged += [s.record.request_id for s in page.requests]
        cursor = page.cursor
        if cursor is None:
            break
    assert paged == ids

    assert not {opened, waiting, withdrawn} & {
        r["requestId"] for r in world.app(BOB).ok("GET", "/requests?requester=me")["value"]
    }
    status, error = world.app(BOB).call("GET", f"/requests?requester={ALICE.object_id}")
    assert (status, error["error"]["target"]) == (403, "requester")
    status, error = world.app(ALICE).call("GET", "/requests?requester=me&status=Pending")
    assert (status, error["error"]["target"]) == (400, "status")
    world.app(ALICE).ok("DELETE", f"/requests/{opened}")


def test_queued_requests_wait_unless_a_trusted_sender_relays_an_approval(stack: Stack) -> None:
    world = new_world(stack, ONE)
    settings = load_settings(stack.env)
    requests_queue = queue(settings.requests_queue, settings)
    end = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()

    def message(ticket: str, **extra: Any) -> str:
        return json.dumps(
            {
                "ticketId": ticket,
                "requester": {"objectId": ALICE.object_id, "displayName": ALICE.display_name},
                "virtualMachines": [
                    {
                        "id": world.estate.vm_id(world.estate.vm_web),
                        "ports": [
                            {"number": 22, "allowedSourceAddressPrefix": "198.51.100.7", "endTimeUtc": end}
                        ],
                    }
                ],
                "justification": "change CHG-1",
                **extra,
            }
        )

    plain, relayed, untrusted = (f"CHG-{uuid.uuid4().hex[:6]}-{n}" for n in ("a", "b", "c"))
    approver = {"objectId": BOB.object_id, "displayName": BOB.display_name}
    send(requests_queue, message(plain))
    send(
        requests_queue,
        message(
            relayed, priorApproval={"sender": TRUSTED_SENDER, "approvedBy": approver, "reference": "CAB-7"}
        ),
    )
    send(requests_queue, message(untrusted, priorApproval={"sender": "someone-else", "approvedBy": approver}))

    def grants_by_ticket() -> dict[str, dict[str, Any]]:
        answer = world.app(ALICE).ok("GET", f"/grants?vm={world.estate.vm_id(world.estate.vm_web)}")
        return {g["ticketId"]: g for g in answer["value"]}

    found = wait_for(
        lambda: (
            (g := grants_by_ticket())
            and plain in g
            and relayed in g
            and g[relayed]["status"] == "Initiated"
            and g
        ),
        40,
        "the queued requests recorded and the relayed one opened",
    )
    assert (found[plain]["status"], found[plain]["statusReason"]) == ("Pending", "Approval required")
    relayed_request = status_of(world, found[relayed]["requestId"])
    decision = relayed_request["approval"]["decisions"][0]
    assert (decision["objectId"], decision["relayedBy"], decision["comment"]) == (
        BOB.object_id,
        TRUSTED_SENDER,
        "CAB-7",
    )
    refused = wait_for(
        lambda: [e for e in audit_of(stack, untrusted) if e.event == EventId.REQUEST_REFUSED],
        20,
        "the untrusted relay refused",
    )
    assert refused[0].details["field"] == "priorApproval.sender"
    assert untrusted not in grants_by_ticket()  # refused, so nothing recorded


def test_a_scheduled_request_opens_nothing_before_its_start(stack: Stack, scheduled: Any) -> None:
    world, request_id, start = scheduled
    if datetime.now(UTC) < start - timedelta(seconds=3):
        assert port_status(world, request_id)[0] == "Initiating"
        assert world.our_allows() == []
    opened = wait_for(
        lambda: port_status(world, request_id)[0] == "Initiated" and datetime.now(UTC),
        max((start - datetime.now(UTC)).total_seconds(), 0) + 40,
        "the scheduled port Initiated",
    )
    assert opened >= start, f"opened at {opened}, before its start {start}"
    port = ports_of(status_of(world, request_id))[0]
    assert datetime.fromisoformat(port["endTimeUtc"].replace("Z", "+00:00")) > start
    assert len(world.our_allows()) == 1
    world.app(ALICE).ok("DELETE", f"/requests/{request_id}")


def test_an_undecided_request_lapses_as_expired(stack: Stack, lapsing: Any) -> None:
    world, request_id, made = lapsing
    # PT1M after it was made, the lapse timer (every 15 s) ends it; run now, past the minute, instead
    # of waiting for its next tick.
    time.sleep(max(0.0, 61 - (time.monotonic() - made)))
    stack.run_timer_now("jit_approval_lapse")
    wait_for(lambda: port_status(world, request_id)[0] == "Expired", 20, "the request lapsed")
    assert port_status(world, request_id) == ("Expired", "ApprovalTimedOut")
    assert status_of(world, request_id)["approval"]["status"] == "Expired"
    assert decide(world, BOB, request_id, "approve")[0] == 409
    assert world.our_allows() == []
    lapsed = [e for e in audit_of(stack, request_id) if e.event == EventId.REQUEST_LAPSED]
    assert lapsed and lapsed[0].details["reason"] == "ApprovalTimedOut"
