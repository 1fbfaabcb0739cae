"""The request side through its HTTP handlers, against Azurite and the ARM emulator's RBAC:
policies, initiate with every check, records, audit, supersede, revoke, identity, fail-closed."""

from __future__ import annotations

import uuid

import pytest

from localrig.processes import free_port
from shared.api import defender_routes, records
from shared.grants import TableGrantStore
from shared.model import PortStatus, StatusReason, VmRef
from shared.storage import queue
from tests.integration.jit_world import API_VERSION, Person, World, app_env


def initiate(world: World, person: Person, body: dict, headers: dict | None = None):
    return world.call(
        defender_routes.initiate,
        "POST",
        world.policy_path() + "/initiate" + API_VERSION,
        person,
        body,
        world.policy_route(),
        headers,
    )


def audit_events(world: World, subject: str) -> list[str]:
    return [event.event for event in world.services.audit.for_subject(subject)]


def test_policy_round_trip_as_defender_answers(world: World, policy: dict) -> None:
    assert policy["id"] == world.policy_path()
    assert policy["type"] == "Microsoft.Security/locations/jitNetworkAccessPolicies"
    assert policy["properties"]["provisioningState"] == "Succeeded"
    assert policy["properties"]["requests"] == []
    status, got, _ = world.call(
        defender_routes.get_policy,
        "GET",
        world.policy_path() + API_VERSION,
        world.admin,
        route=world.policy_route(),
    )
    assert status == 200 and got == policy
    route = {"subscriptionId": world.subscription, "resourceGroupName": world.resource_group}
    status, listed, _ = world.call(
        defender_routes.list_policies, "GET", "/x" + API_VERSION, world.admin, route=route
    )
    assert status == 200 and [p["id"] for p in listed["value"]] == [world.policy_path()]
    assert "policy.written" in audit_events(world, world.policy_path())
    # GET /api/policies: every subscription at once, filtered by read on each policy (the emulator is
    # shared by the session's tests, so other worlds' policies may be listed beside this one).
    for person, sees in ((world.admin, True), (world.bob, False)):
        status, readable, _ = world.call(defender_routes.list_readable_policies, "GET", "/x", person)
        assert status == 200
        assert (world.policy_path() in [p["id"] for p in readable["value"]]) is sees
        if sees:
            assert next(p for p in readable["value"] if p["id"] == world.policy_path()) == policy


def test_invalid_policy_is_a_400_naming_the_field_and_stores_nothing(world: World) -> None:
    status, body, _ = world.call(
        defender_routes.put_policy,
        "PUT",
        world.policy_path() + API_VERSION,
        world.admin,
        world.policy_body(maxRequestAccessDuration="P2D"),
        world.policy_route(),
    )
    assert status == 400
    assert body["error"]["target"] == "properties.virtualMachines[0].ports[0].maxRequestAccessDuration"
    status, _, _ = world.call(
        defender_routes.get_policy,
        "GET",
        world.policy_path() + API_VERSION,
        world.admin,
        route=world.policy_route(),
    )
    assert status == 404


def test_managing_policies_needs_write(world: World) -> None:
    status, body, _ = world.call(
        defender_routes.put_policy,
        "PUT",
        world.policy_path() + API_VERSION,
        world.alice,
        world.policy_body(),
        world.policy_route(),
    )
    assert status == 403 and body["error"]["code"] == "AuthorizationFailed"


def test_api_version_is_required(world: World, policy: dict) -> None:
    status, body, _ = world.call(
        defender_routes.get_policy, "GET", world.policy_path(), world.admin, route=world.policy_route()
    )
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"


def test_delete_answers_200_then_204(world: World, policy: dict) -> None:
    path = world.policy_path() + API_VERSION
    assert (
        world.call(defender_routes.delete_policy, "DELETE", path, world.admin, route=world.policy_route())[0]
        == 200
    )
    assert (
        world.call(defender_routes.delete_policy, "DELETE", path, world.admin, route=world.policy_route())[0]
        == 204
    )


def test_permitted_initiate_records_grant_and_audit_and_hands_over(world: World, policy: dict) -> None:
    status, body, headers = initiate(world, world.alice, world.initiate_body())
    assert status == 202, body
    request_id = body["requestId"]
    assert headers["Location"].endswith(f"/api/requests/{request_id}")
    [vm] = body["virtualMachines"]
    assert vm["ports"][0]["status"] == "Initiating"
    assert vm["ports"][0]["statusReason"] == "UserRequested"
    assert body["requestor"] == "alice@contoso.com"
    stored = world.services.grants.get_request(request_id)
    assert stored is not None
    [grant] = stored.grants
    assert grant.status is PortStatus.INITIATING and grant.targets == {}
    assert grant.source_prefixes == ("10.0.1.0/24",)
    assert grant.requester.object_id == world.alice.object_id
    assert "request.accepted" in audit_events(world, request_id)
    assert "grant.initiating" in audit_events(world, grant.grant_id)
    converge_queue = queue(world.services.settings.converge_queue, world.services.settings)
    visible = converge_queue.peek_messages(max_messages=32)
    # Beside the policy PUT's target hints (the Deny baseline): the grant, now and at its end.
    handed_over = [m.content for m in visible if b'"kind":"grant"' in m.content]
    assert handed_over == [f'{{"kind":"grant","grant_id":"{grant.grant_id}"}}'.encode()]
    hints = len(visible) - len(handed_over)
    assert converge_queue.get_queue_properties().approximate_message_count == hints + 2
    status, got, _ = world.call(
        records.get_request, "GET", f"/requests/{request_id}", world.alice, route={"requestId": request_id}
    )
    assert status == 200 and got["virtualMachines"][0]["ports"][0]["grantId"] == grant.grant_id
    status, history, _ = world.call(
        defender_routes.get_policy,
        "GET",
        world.policy_path() + API_VERSION,
        world.admin,
        route=world.policy_route(),
    )
    assert history["properties"]["requests"][0]["virtualMachines"][0]["ports"][0]["number"] == 22
    status, grants, _ = world.call(
        records.list_grants, "GET", f"/grants?vm={world.vm_id('vm1')}&active=true", world.alice
    )
    assert status == 200 and [g["grantId"] for g in grants["value"]] == [grant.grant_id]


def test_requester_without_rbac_is_refused_and_audited(world: World, policy: dict) -> None:
    status, body, _ = initiate(world, world.bob, world.initiate_body())
    assert status == 403
    assert body["error"]["target"] == "virtualMachines[0].id"
    assert "initiate/action" in body["error"]["message"]
    refused = world.services.audit.for_subject(world.policy_path())
    assert [e.details["code"] for e in refused if e.event == "request.refused"] == ["AuthorizationFailed"]


def test_role_on_one_vm_does_not_reach_another(world: World, policy: dict) -> None:
    status, _body, _ = initiate(world, world.alice, world.initiate_body(vm="vm2"))
    assert status == 403


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"source": "192.0.2.0/24"}, "virtualMachines[0].ports[0].allowedSourceAddressPrefix"),
        ({"source": "*"}, "virtualMachines[0].ports[0].allowedSourceAddressPrefix"),
        ({"port": 8080}, "virtualMachines[0].ports[0].number"),
        ({"hours": 4}, "virtualMachines[0].ports[0].endTimeUtc"),
        ({"hours": -1}, "virtualMachines[0].ports[0].endTimeUtc"),
    ],
)
def test_requests_outside_the_policy_are_refused_naming_the_field(
    world: World, policy: dict, kwargs, field
) -> None:
    status, body, _ = initiate(world, world.alice, world.initiate_body(**kwargs))
    assert status == 400, body
    assert body["error"]["target"] == field
    assert world.services.grants.list_for_vm(VmRef.parse(world.vm_id("vm1")), open_only=False) == []


def test_no_prefix_uses_the_platform_reported_address_not_client_headers(world: World, policy: dict) -> None:
    # The client claims 10.0.9.9 first; the platform appended the real peer last.
    status, body, _ = initiate(
        world, world.alice, world.initiate_body(source=None), {"X-Forwarded-For": "10.0.9.9, 10.0.7.7:50312"}
    )
    assert status == 202, body
    assert body["virtualMachines"][0]["ports"][0]["allowedSourceAddressPrefix"] == "10.0.7.7/32"
    status, body, _ = initiate(
        world,
        world.alice,
        world.initiate_body(source=None),
        {"X-Forwarded-For": "10.0.9.9, 198.51.100.4:1234"},
    )
    assert status == 400 and body["error"]["code"] == "SourceNotAllowed"


def test_malformed_and_oversized_bodies(world: World, policy: dict) -> None:
    path = world.policy_path() + "/initiate" + API_VERSION
    status, body, _ = world.call(
        defender_routes.initiate, "POST", path, world.alice, route=world.policy_route(), raw=b"{not json"
    )
    assert status == 400 and body["error"]["code"] == "InvalidRequestContent"
    status, body, _ = world.call(
        defender_routes.initiate,
        "POST",
        path,
        world.alice,
        route=world.policy_route(),
        raw=b" " * 70000 + b"{}",
    )
    assert status == 413
    status, body, _ = initiate(
        world, world.alice, {"virtualMachines": [{"id": world.vm_id("vm1"), "ports": [{"number": 22}]}]}
    )
    assert status == 400 and body["error"]["target"] == "virtualMachines[0].ports[0].endTimeUtc"


def test_newer_request_supersedes_older_for_same_vm_and_port(world: World, policy: dict) -> None:
    _, first, _ = initiate(world, world.alice, world.initiate_body())
    _, second, _ = initiate(world, world.alice, world.initiate_body(source="10.0.2.0/24"))
    older = world.services.grants.get_request(first["requestId"]).grants[0]
    newer = world.services.grants.get_request(second["requestId"]).grants[0]
    assert older.status is PortStatus.REVOKED
    assert older.status_reason is StatusReason.NEWER_REQUEST_INITIATED
    assert newer.status is PortStatus.INITIATING
    assert "grant.revoked" in audit_events(world, older.grant_id)


def test_revoke_by_requester_or_admin_only(world: World, policy: dict) -> None:
    _, body, _ = initiate(world, world.alice, world.initiate_body())
    request_id = body["requestId"]
    route = {"requestId": request_id}
    assert (
        world.call(records.revoke_request, "DELETE", f"/requests/{request_id}", world.bob, route=route)[0]
        == 403
    )
    status, answer, _ = world.call(
        records.revoke_request, "DELETE", f"/requests/{request_id}", world.alice, route=route
    )
    assert status == 202
    port = answer["virtualMachines"][0]["ports"][0]
    assert (port["status"], port["statusReason"]) == ("Revoked", "UserRequested")
    _, body, _ = initiate(world, world.alice, world.initiate_body(port=3389, source="198.51.100.1"))
    route = {"requestId": body["requestId"]}
    assert world.call(records.revoke_request, "DELETE", "/x", world.admin, route=route)[0] == 202
    assert world.call(records.get_request, "GET", "/x", world.alice, route={"requestId": "0" * 32})[0] == 404


def test_not_actions_and_groups_are_honoured(world: World, policy: dict) -> None:
    carol = Person(str(uuid.uuid4()), "carol@contoso.com", groups=(str(uuid.uuid4()),))
    excluded = world.custom_role(
        ["Microsoft.Security/*"], ["Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action"]
    )
    world.assign(world.rg_scope, excluded, carol.object_id)
    assert initiate(world, carol, world.initiate_body())[0] == 403
    via_group = world.custom_role(["Microsoft.Security/locations/jitNetworkAccessPolicies/*"])
    world.assign(world.sub_scope, via_group, carol.groups[0], principal_type="Group")
    world.services.authorizer._decisions.clear()  # the brief RBAC cache would remember the refusal
    assert initiate(world, carol, world.initiate_body())[0] == 202


def test_forged_principal_header_is_refused_with_easy_auth_off(storage_env, arm_emulator) -> None:
    world = World.create(app_env(storage_env, arm_emulator, WEBSITE_AUTH_ENABLED="false"), arm_emulator)
    status, _body, headers = world.call(
        defender_routes.get_policy,
        "GET",
        world.policy_path() + API_VERSION,
        world.admin,
        route=world.policy_route(),
    )
    assert status == 401
    assert "WWW-Authenticate" in headers


def test_rbac_unreadable_fails_closed(storage_env, arm_emulator) -> None:
    world = World.create(app_env(storage_env, arm_emulator), arm_emulator)
    world.call(
        defender_routes.put_policy,
        "PUT",
        world.policy_path() + API_VERSION,
        world.admin,
        world.policy_body(),
        world.policy_route(),
    )
    dead = app_env(storage_env, arm_emulator, PORTCULLIS_ARM_ENDPOINT=f"https://127.0.0.1:{free_port()}")
    dead["PORTCULLIS_TABLE_PREFIX"] = storage_env["PORTCULLIS_TABLE_PREFIX"]
    from shared.services import build_services
    from shared.settings import load_settings

    world.services = build_services(load_settings(dead))
    status, body, _ = initiate(world, world.alice, world.initiate_body())
    assert status == 503 and body["error"]["code"] == "AuthorizationUnavailable"
    store = TableGrantStore(world.services.settings)
    assert store.list_for_vm(VmRef.parse(world.vm_id("vm1")), open_only=False) == []
