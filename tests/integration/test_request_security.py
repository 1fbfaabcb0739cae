"""Issue 15, the request side: each test is named after the hole it closes, runs the app's own
handlers against Azurite and the ARM emulator's RBAC, and failed on the code before the fix."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ServiceRequestError

from localrig.estates.sample import Estate
from shared import enforcement, plan
from shared.api import defender_routes, records
from shared.model import PortStatus, ResourceId, StatusReason, TargetKind, TargetRef, VmRef
from shared.queue_intake import handle_queued_request
from tests.integration.jit_world import API_VERSION, Person, World

REQUESTER_ACTIONS = [
    "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action",
    "Microsoft.Security/locations/jitNetworkAccessPolicies/read",
]


def initiate(world: World, person: Person, body: Any, headers: dict | None = None):
    return world.call(
        defender_routes.initiate,
        "POST",
        world.policy_path() + "/initiate" + API_VERSION,
        person,
        body,
        world.policy_route(),
        headers,
    )


def list_grants(world: World, person: Person, query: str) -> tuple[int, Any]:
    status, body, _ = world.call(records.list_grants, "GET", f"/grants?{query}", person)
    return status, body


def requester(world: World, name: str, *vms: str) -> Person:
    """A person with the JIT requester role on each of `vms` (VM scope, as requesters usually are)."""
    person = Person(str(uuid.uuid4()), f"{name}@contoso.com")
    role = world.custom_role(REQUESTER_ACTIONS)
    for vm in vms:
        world.assign(world.vm_id(vm), role, person.object_id)
    return person


def queued(world: World, ticket: str, person: Person, **extra: Any) -> str:
    body = world.initiate_body()
    requester_body = {"objectId": person.object_id, "displayName": person.name, **extra.pop("requester", {})}
    return json.dumps({"ticketId": ticket, "requester": requester_body, **body, **extra})


def grant_of(world: World, request_id: str):
    stored = world.services.grants.get_request(request_id)
    assert stored is not None
    return stored.grants[0]


def converge_deps(world: World) -> enforcement.ConvergeDeps:
    return enforcement.build_deps(
        world.services.settings, now=lambda: datetime.now(UTC), sleep=lambda _s: None
    )


def grant_vm(world: World) -> VmRef:
    return VmRef.parse(world.vm_id("vm1"))


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


# ---- item 14: supersede only the same requester's grants ----


def test_a_newer_request_supersedes_only_the_same_requesters_grants(world: World, policy: dict) -> None:
    bob = requester(world, "bob2", "vm1")
    _, alice_first, _ = initiate(world, world.alice, world.initiate_body())
    status, bobs, _ = initiate(world, bob, world.initiate_body(source="10.0.3.0/24"))
    assert status == 202, bobs
    # Bob's request does not end Alice's session: the two grants coexist.
    assert grant_of(world, alice_first["requestId"]).status is PortStatus.INITIATING
    _, alice_second, _ = initiate(world, world.alice, world.initiate_body(source="10.0.2.0/24"))
    older = grant_of(world, alice_first["requestId"])
    assert (older.status, older.status_reason) == (PortStatus.REVOKED, StatusReason.NEWER_REQUEST_INITIATED)
    assert grant_of(world, bobs["requestId"]).status is PortStatus.INITIATING
    assert grant_of(world, alice_second["requestId"]).status is PortStatus.INITIATING


def test_two_peoples_grants_on_one_vm_and_port_behind_a_firewall_each_get_their_own_rules(
    world: World, policy: dict
) -> None:
    """Coexisting grants on one VM and port: two DNAT rules on two mapped ports, two NSG Allow rules."""
    estate = Estate(world.subscription, world.resource_group)
    put_firewalled_policy(world, estate)
    bob = requester(world, "bob3", estate.vm_app)
    world.assign(world.vm_id(estate.vm_app), world.custom_role(REQUESTER_ACTIONS), world.alice.object_id)
    ids = []
    for person, source in ((world.alice, "198.51.100.1"), (bob, "198.51.100.2")):
        status, body, _ = initiate(world, person, app_body(world, estate, source))
        assert status == 202, body
        ids.append(body["requestId"])
    deps = converge_deps(world)
    grants = [grant_of(world, request_id) for request_id in ids]
    for grant in grants:
        enforcement.handle_grant(deps, grant.grant_id)
    applied = [grant_of(world, request_id) for request_id in ids]
    assert [g.status for g in applied] == [PortStatus.INITIATED, PortStatus.INITIATED], [
        g.targets for g in applied
    ]
    assert applied[0].mapped_port != applied[1].mapped_port
    firewall = world.arm.resource(estate.classic_firewall_id)
    ours = next(c for c in firewall["properties"]["natRuleCollections"] if c["name"] == plan.COLLECTION_NAME)
    rules = {(tuple(r["sourceAddresses"]), tuple(r["destinationPorts"])) for r in ours["properties"]["rules"]}
    assert rules == {
        (("198.51.100.1",), (str(applied[0].mapped_port),)),
        (("198.51.100.2",), (str(applied[1].mapped_port),)),
    }
    nsg = world.arm.resource(estate.nsg_id("nsg-app-nic"))
    names = {r["name"] for r in nsg["properties"]["securityRules"]}
    assert {plan.allow_rule_name(g) for g in applied} <= names


def put_firewalled_policy(world: World, estate: Estate) -> None:
    body = world.policy_body()
    body["properties"]["virtualMachines"].append(
        {
            "id": world.vm_id(estate.vm_app),
            "publicIpAddress": estate.classic_fw_public_ip,
            "ports": [
                {
                    "number": 22,
                    "protocol": "TCP",
                    "allowedSourceAddressPrefix": "*",
                    "maxRequestAccessDuration": "PT1H",
                }
            ],
        }
    )
    status, answer, _ = world.call(
        defender_routes.put_policy,
        "PUT",
        world.policy_path() + API_VERSION,
        world.admin,
        body,
        world.policy_route(),
    )
    assert status == 200, answer


def app_body(world: World, estate: Estate, source: str) -> dict[str, Any]:
    end = (datetime.now(UTC) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "virtualMachines": [
            {
                "id": world.vm_id(estate.vm_app),
                "ports": [{"number": 22, "endTimeUtc": end, "allowedSourceAddressPrefix": source}],
            }
        ],
        "justification": "maintenance",
    }


# ---- item 4: the grant list shows a requester only their own grants ----


def test_grant_list_shows_a_requester_their_own_grants_and_everyones_only_to_policy_readers(
    world: World, policy: dict
) -> None:
    bob = requester(world, "bob4", "vm1")
    _, alices, _ = initiate(world, world.alice, world.initiate_body())
    _, bobs, _ = initiate(world, bob, world.initiate_body(source="10.0.3.0/24"))
    vm = f"vm={world.vm_id('vm1')}"
    status, seen_by_bob = list_grants(world, bob, vm)
    assert status == 200
    assert [g["requestId"] for g in seen_by_bob["value"]] == [bobs["requestId"]]
    assert world.alice.object_id not in json.dumps(seen_by_bob)
    status, seen_by_admin = list_grants(world, world.admin, vm)  # Owner of the group: reads the policy
    assert {g["requestId"] for g in seen_by_admin["value"]} == {alices["requestId"], bobs["requestId"]}
    route = {"requestId": alices["requestId"]}
    assert world.call(records.get_request, "GET", "/x", bob, route=route)[0] == 403


# ---- item 1 (request side): a firewall's owner lists and revokes the grants that use it ----


def test_a_firewall_owner_lists_and_revokes_the_grants_on_their_firewall(world: World, policy: dict) -> None:
    estate = Estate(world.subscription, world.resource_group)
    put_firewalled_policy(world, estate)
    world.assign(world.vm_id(estate.vm_app), world.custom_role(REQUESTER_ACTIONS), world.alice.object_id)
    status, body, _ = initiate(world, world.alice, app_body(world, estate, "198.51.100.9"))
    assert status == 202, body
    request_id = body["requestId"]
    enforcement.handle_grant(converge_deps(world), grant_of(world, request_id).grant_id)
    grant = grant_of(world, request_id)
    assert TargetRef(TargetKind.FIREWALL_CLASSIC, ResourceId(estate.classic_firewall_id)).key in grant.targets

    owner = Person(str(uuid.uuid4()), "netops@contoso.com")
    writer = world.custom_role(
        ["Microsoft.Network/azureFirewalls/write", "Microsoft.Network/azureFirewalls/read"]
    )
    world.assign(estate.classic_firewall_id, writer, owner.object_id)
    stranger = Person(str(uuid.uuid4()), "stranger@contoso.com")

    status, listed = list_grants(world, owner, f"firewall={estate.classic_firewall_id}&active=true")
    assert status == 200, listed
    assert [g["requestId"] for g in listed["value"]] == [request_id]
    assert list_grants(world, stranger, f"firewall={estate.classic_firewall_id}")[0] == 403
    status, on_vm = list_grants(world, owner, f"vm={world.vm_id(estate.vm_app)}")
    assert [g["requestId"] for g in on_vm["value"]] == [request_id]
    assert list_grants(world, stranger, f"vm={world.vm_id(estate.vm_app)}")[1]["value"] == []

    route = {"requestId": request_id}
    assert world.call(records.revoke_request, "DELETE", "/x", stranger, route=route)[0] == 403
    status, answer, _ = world.call(records.revoke_request, "DELETE", "/x", owner, route=route)
    assert status == 202, answer
    revoked = grant_of(world, request_id)
    assert (revoked.status, revoked.status_reason) == (PortStatus.REVOKED, StatusReason.USER_REQUESTED)


# ---- item 7: deep JSON is a 400, audited; on the queue, poisoned at once ----


def test_a_deeply_nested_ignored_field_is_a_400_audited_and_writes_nothing(
    world: World, policy: dict
) -> None:
    body = {**world.initiate_body(), "extra": nested(900)}  # json.loads accepts it; json.dumps would not
    status, answer, _ = initiate(world, world.alice, body)
    assert status == 400, answer
    assert (answer["error"]["code"], answer["error"]["target"]) == ("InvalidRequestContent", "body")
    refused = [
        e for e in world.services.audit.for_subject(world.policy_path()) if e.event == "request.refused"
    ]
    assert [e.details["field"] for e in refused] == ["body"]
    assert world.services.grants.list_for_vm(grant_vm(world), open_only=False) == []
    message = json.dumps({**json.loads(queued(world, "DEEP-1", world.alice)), "extra": nested(900)})
    outcome = handle_queued_request(message, world.services)  # no exception: poisoned, not retried
    assert not outcome.accepted and "nested more than" in (outcome.reason or "")


# ---- item 18: once the grants are written, the answer says so ----


class _Switch:
    failing = False


class _GrantsTable:
    """The real grants TableClient; after the request's transaction (or a grant's update, when
    `after_update`), storage 'goes down'."""

    def __init__(self, real: Any, switch: _Switch, *, after_update: bool = False) -> None:
        self._real, self._switch, self._after_update = real, switch, after_update

    def submit_transaction(self, *args: Any, **kwargs: Any) -> Any:
        result = self._real.submit_transaction(*args, **kwargs)
        self._switch.failing = not self._after_update
        return result

    def update_entity(self, *args: Any, **kwargs: Any) -> Any:
        result = self._real.update_entity(*args, **kwargs)
        self._switch.failing = self._after_update or self._switch.failing
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _AuditTable:
    """The real audit TableClient, refusing writes while the switch says storage is down."""

    def __init__(self, real: Any, switch: _Switch) -> None:
        self._real, self._switch = real, switch

    def create_entity(self, *args: Any, **kwargs: Any) -> Any:
        if self._switch.failing:
            raise ServiceRequestError("storage is unreachable (test)")
        return self._real.create_entity(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _fail_audit_after_grant_write(world: World, *, after_update: bool = False) -> _Switch:
    switch = _Switch()
    grants, audit = world.services.grants, world.services.audit
    grants._grants = _GrantsTable(grants._grants, switch, after_update=after_update)  # type: ignore[assignment]
    audit._by_day = _AuditTable(audit._by_day, switch)  # type: ignore[assignment]
    audit._by_subject = _AuditTable(audit._by_subject, switch)  # type: ignore[assignment]
    return switch


def test_storage_failing_after_the_grant_write_answers_202_not_nothing_changed(
    world: World, policy: dict
) -> None:
    switch = _fail_audit_after_grant_write(world)
    status, body, headers = initiate(world, world.alice, world.initiate_body())
    assert status == 202, body  # before the fix: 503 "nothing was changed" while the grant stood
    request_id = body["requestId"]
    assert headers["Location"] == f"/api/requests/{request_id}"
    assert grant_of(world, request_id).status is PortStatus.INITIATING
    switch.failing = False
    events = [e.event for e in world.services.audit.for_subject(request_id)]
    # The decision was audited before the write, naming the request and its grants.
    assert events == ["request.accepting"]


def test_a_queued_request_whose_audit_failed_after_the_write_is_audited_on_redelivery(
    world: World, policy: dict
) -> None:
    switch = _fail_audit_after_grant_write(world)
    message = queued(world, f"CHG-{uuid.uuid4().hex[:6]}", world.alice)
    try:
        handle_queued_request(message, world.services)
    except ServiceRequestError:
        pass  # the host will redeliver it
    else:
        raise AssertionError("the first delivery must fail so that the queue redelivers it")
    switch.failing = False
    outcome = handle_queued_request(message, world.services)
    assert outcome.accepted and outcome.request_id is not None
    events = [e.event for e in world.services.audit.for_subject(outcome.request_id)]
    assert events[:2] == ["request.accepting", "request.accepted"]
    assert len(world.services.grants.list_for_vm(grant_vm(world), open_only=False)) == 1


def test_storage_failing_after_a_revoke_is_written_never_answers_nothing_changed(
    world: World, policy: dict
) -> None:
    _, body, _ = initiate(world, world.alice, world.initiate_body())
    request_id = body["requestId"]
    switch = _fail_audit_after_grant_write(world, after_update=True)
    status, answer, _ = world.call(
        records.revoke_request, "DELETE", "/x", world.alice, route={"requestId": request_id}
    )
    assert status == 202, answer  # before the fix: 503 "nothing was changed" with the grant revoked
    switch.failing = False
    revoked = grant_of(world, request_id)
    assert (revoked.status, revoked.status_reason) == (PortStatus.REVOKED, StatusReason.USER_REQUESTED)
    events = [e.event for e in world.services.audit.for_subject(revoked.grant_id)]
    assert "grant.revoking" in events  # the decision was audited before the write


# ---- item 8: ids follow Azure's naming rules before they reach an ARM URL ----


def test_a_vm_id_with_url_characters_is_a_400_naming_the_field_and_reaches_no_arm_url(
    world: World, policy: dict
) -> None:
    before = world.arm.log_mark()
    for name in ("vm-web?api-version=2015-01-01", "vm#x", "vm web", "vm%2F..%2F"):
        body = world.initiate_body()
        body["virtualMachines"][0]["id"] = world.vm_id("vm1").rsplit("/", 1)[0] + "/" + name
        status, answer, _ = initiate(world, world.alice, body)
        assert status == 400, (name, answer)
        assert answer["error"]["target"] == "virtualMachines[0].id"
    status, answer = list_grants(world, world.admin, f"vm={world.vm_id('vm1')}x#y")
    assert status == 400 and answer["error"]["target"] == "vm"
    not_a_guid = world.vm_id("vm1").replace(world.subscription, "sub1")
    status, answer = list_grants(world, world.admin, f"vm={not_a_guid}")
    assert status == 400 and answer["error"]["target"] == "vm"
    assert world.arm.requests_since(before) == []  # nothing was asked of ARM


# ---- item 5: a queued request naming its policy ----


def test_a_queued_request_naming_its_policy_id_is_accepted(world: World, policy: dict) -> None:
    message = queued(world, f"CHG-{uuid.uuid4().hex[:6]}", world.alice, policyId=world.policy_path())
    outcome = handle_queued_request(message, world.services)
    assert outcome.accepted, outcome.reason
    stored = world.services.grants.get_request(outcome.request_id or "")
    assert stored is not None and stored.record.policy.id == world.policy_path()


# ---- item 9: ticket ids are opaque and case-sensitive ----


def test_ticket_ids_differing_only_in_case_are_two_requests(world: World, policy: dict) -> None:
    bob = requester(world, "bob9", "vm1")
    first = handle_queued_request(queued(world, "RT-1", world.alice), world.services)
    second = handle_queued_request(queued(world, "rt-1", bob), world.services)
    assert first.accepted and second.accepted, (first.reason, second.reason)
    assert first.request_id != second.request_id


# ---- item 11: a malformed principal is a 401, never a 503 ----


def test_an_oversized_object_id_is_a_401_and_writes_nothing(world: World, policy: dict) -> None:
    huge = Person("a" * 40000, "huge@contoso.com")
    status, answer, _ = initiate(world, huge, world.initiate_body())
    assert status == 401, answer
    assert world.services.grants.list_for_vm(grant_vm(world), open_only=False) == []
    message = queued(world, "HUGE-1", world.alice, requester={"objectId": "not-a-guid"})
    outcome = handle_queued_request(message, world.services)
    assert not outcome.accepted and (outcome.reason or "").startswith("requester")


# ---- item 6: the queue's sender asserts groups only when trusted to ----


def test_queued_group_claims_count_only_when_the_sender_is_trusted_to_assert_them(
    world: World, policy: dict
) -> None:
    group = str(uuid.uuid4())
    world.assign(world.vm_id("vm1"), world.custom_role(REQUESTER_ACTIONS), group, principal_type="Group")
    carol = Person(str(uuid.uuid4()), "carol@contoso.com")  # no role of her own
    message = queued(world, "GRP-1", carol, requester={"groupIds": [group]})
    outcome = handle_queued_request(message, world.services)
    assert not outcome.accepted and (outcome.reason or "").startswith("requester.groupIds")
    assert world.services.grants.list_for_vm(grant_vm(world), open_only=False) == []
    world.services.settings = dataclasses.replace(world.services.settings, queue_trusts_group_claims=True)
    outcome = handle_queued_request(message, world.services)
    assert outcome.accepted, outcome.reason


# ---- item 17: the caller's address behind a proxy of ours ----


def test_with_a_trusted_proxy_hop_the_callers_address_is_the_entry_before_the_proxy(
    world: World, policy: dict
) -> None:
    world.services.settings = dataclasses.replace(world.services.settings, trusted_proxy_hops=1)
    # client's claim, the caller as Front Door saw it, Front Door as the platform saw it
    forwarded = {"X-Forwarded-For": "10.0.9.9, 10.0.7.7, 198.51.100.250:443"}
    status, body, _ = initiate(world, world.alice, world.initiate_body(source=None), forwarded)
    assert status == 202, body
    assert body["virtualMachines"][0]["ports"][0]["allowedSourceAddressPrefix"] == "10.0.7.7/32"


# ---- item 15: Location never comes from the client's Host header ----


def test_location_is_a_relative_url_not_built_from_the_host_header(world: World, policy: dict) -> None:
    status, body, headers = initiate(world, world.alice, world.initiate_body(), {"Host": "evil.example"})
    assert status == 202, body
    assert headers["Location"] == f"/api/requests/{body['requestId']}"
    status, _, headers = world.call(
        records.revoke_request, "DELETE", "/x", world.alice, route={"requestId": body["requestId"]}
    )
    assert status == 202 and headers["Location"] == f"/api/requests/{body['requestId']}"
