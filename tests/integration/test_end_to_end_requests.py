"""Through the local host (devhost + Azurite + emulator): azure-mgmt-security manages policies and
initiates against the app unchanged, and a queued request becomes a grant.

Pointing the SDK at the app: `SecurityCenter(cred, sub, base_url=<app>/api, authentication_policy=...)`.
The local host is plain HTTP and the app runs in JWT mode (the stack's default), so the test client
replaces the SDK's bearer-token policy (which refuses to send tokens over http) with one that sends
the dev user's token from the local issuer (`Stack.headers_for`). Against a deployed app, pass a real
credential with the app's audience as `credential_scopes` and keep the default policy (https).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.security import SecurityCenter
from azure.mgmt.security.v2020_01_01.models import (
    JitNetworkAccessPolicy,
    JitNetworkAccessPolicyInitiatePort,
    JitNetworkAccessPolicyInitiateRequest,
    JitNetworkAccessPolicyInitiateVirtualMachine,
    JitNetworkAccessPolicyVirtualMachine,
    JitNetworkAccessPortRule,
)

from localrig.credentials import StaticTokenCredential
from localrig.devusers import ADMIN, ALICE, CAROL, EVE, DevUser
from localrig.emulator_client import EmulatorClient
from localrig.estates.roles import OWNER_ROLE, assign_role, define_role
from localrig.estates.sample import Estate
from localrig.stack import Stack, start_stack
from shared.authz import INITIATE_ACTION, READ_POLICY_ACTION
from shared.settings import load_settings
from shared.storage import queue, send


class SignedIn(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Sends `user`'s sign-in (a bearer token in JWT mode) with every request of the SDK."""

    def __init__(self, stack: Stack, user: DevUser) -> None:
        self._stack, self._user = stack, user

    def on_request(self, request) -> None:  # type: ignore[no-untyped-def]
        request.http_request.headers.update(self._stack.headers_for(self._user))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(tmp_path_factory.mktemp("requests-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def estate(stack: Stack) -> dict:
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
    rg = f"rg-{uuid.uuid4().hex[:8]}"
    estate = Estate(arm.subscription_id, rg)
    arm.seed(estate.resources())
    auth = arm.client(AuthorizationManagementClient)
    role = str(uuid.uuid4())
    define_role(auth, arm.subscription_id, role, "JIT requester e2e", (INITIATE_ACTION, READ_POLICY_ACTION))
    assign_role(auth, arm.subscription_id, estate.scope, OWNER_ROLE, ADMIN.object_id)
    assign_role(auth, arm.subscription_id, estate.vm_id(Estate.vm_web), role, ALICE.object_id)
    return {"arm": arm, "rg": rg, "estate": estate}


def sdk(stack: Stack, subscription: str, user: DevUser) -> SecurityCenter:
    return SecurityCenter(
        StaticTokenCredential(),
        subscription,
        base_url=stack.api_url,
        authentication_policy=SignedIn(stack, user),
    )


def get_json(url: str, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_sdk_manages_policies_and_initiates_unchanged(stack: Stack, estate: dict) -> None:
    arm, rg, vm_id = estate["arm"], estate["rg"], estate["estate"].vm_id(Estate.vm_web)
    admin = sdk(stack, arm.subscription_id, ADMIN)
    policy = admin.jit_network_access_policies.create_or_update(
        rg,
        "westeurope",
        "default",
        JitNetworkAccessPolicy(
            kind="Basic",
            virtual_machines=[
                JitNetworkAccessPolicyVirtualMachine(
                    id=vm_id,
                    ports=[
                        JitNetworkAccessPortRule(
                            number=22,
                            protocol="TCP",
                            allowed_source_address_prefix="*",
                            max_request_access_duration="PT3H",
                        )
                    ],
                )
            ],
        ),
    )
    assert policy.provisioning_state == "Succeeded"
    assert policy.virtual_machines[0].ports[0].number == 22
    got = admin.jit_network_access_policies.get(rg, "westeurope", "default")
    assert got.id == policy.id
    assert [p.name for p in admin.jit_network_access_policies.list_by_resource_group(rg)] == ["default"]
    assert policy.id in [p.id for p in admin.jit_network_access_policies.list()]

    alice = sdk(stack, arm.subscription_id, ALICE)
    end = datetime.now(UTC) + timedelta(hours=1)
    answer = alice.jit_network_access_policies.initiate(
        rg,
        "westeurope",
        "default",
        JitNetworkAccessPolicyInitiateRequest(
            virtual_machines=[
                JitNetworkAccessPolicyInitiateVirtualMachine(
                    id=vm_id, ports=[JitNetworkAccessPolicyInitiatePort(number=22, end_time_utc=end)]
                )
            ],
            justification="e2e",
        ),
    )
    port = answer.virtual_machines[0].ports[0]
    # No prefix given: the devhost reports the socket peer, as App Service's front end does.
    assert port.allowed_source_address_prefix == "127.0.0.1/32"
    assert port.status == "Initiating"
    assert answer.requestor == ALICE.username
    history = admin.jit_network_access_policies.get(rg, "westeurope", "default").requests
    assert history and history[-1].justification == "e2e"
    status, grants = get_json(f"{stack.api_url}/grants?vm={vm_id}&active=true", stack.headers_for(ALICE))
    assert status == 200 and grants["value"][0]["port"] == 22
    see_who_holds_access(stack, estate, grants["value"][0]["grantId"])

    status, openapi = get_json(f"{stack.api_url}/openapi.json", {})
    assert status == 200 and "/requests/{requestId}" in openapi["paths"]


def see_who_holds_access(stack: Stack, estate: dict, grant_id: str) -> None:
    """GET /api/grants?active=true: one call across every VM, under the ?vm= rule. The owner of the
    VM's resource group and the requester see the open grant; a reader of another resource group's
    policies and someone with no rights do not; bad parameters are a 400 naming the parameter."""
    arm = estate["arm"]
    auth = arm.client(AuthorizationManagementClient)
    reader = str(uuid.uuid4())
    define_role(auth, arm.subscription_id, reader, "JIT policy reader e2e", (READ_POLICY_ACTION,))
    elsewhere = f"/subscriptions/{arm.subscription_id}/resourceGroups/{arm.new_resource_group()}"
    assign_role(auth, arm.subscription_id, elsewhere, reader, CAROL.object_id)
    url = f"{stack.api_url}/grants?active=true"
    for user, sees in ((ADMIN, True), (ALICE, True), (CAROL, False), (EVE, False)):
        status, page = get_json(url, stack.headers_for(user))
        assert status == 200, (user.name, page)
        assert (grant_id in [g["grantId"] for g in page["value"]]) is sees, (user.name, page)
        assert all(g["active"] for g in page["value"]) and "nextLink" not in page
    for query, target in (
        ("active=false", "vm"),
        ("", "vm"),
        ("active=maybe", "active"),
        ("active=true&%24skipToken=nope", "$skipToken"),
        (f"active=true&vm={estate['estate'].vm_id(Estate.vm_web)}&%24skipToken=x", "$skipToken"),
    ):
        status, error = get_json(f"{stack.api_url}/grants?{query}", stack.headers_for(ADMIN))
        assert status == 400 and error["error"]["target"] == target, (query, error)


def test_queued_request_gives_one_grant_and_bad_messages_are_poisoned(stack: Stack, estate: dict) -> None:
    settings = load_settings(stack.env)
    vm_id = estate["estate"].vm_id(Estate.vm_web)
    admin = sdk(stack, estate["arm"].subscription_id, ADMIN)
    admin.jit_network_access_policies.create_or_update(
        estate["rg"],
        "westeurope",
        "default",
        JitNetworkAccessPolicy(
            kind="Basic",
            virtual_machines=[
                JitNetworkAccessPolicyVirtualMachine(
                    id=vm_id,
                    ports=[
                        JitNetworkAccessPortRule(
                            number=3389,
                            protocol="*",
                            allowed_source_address_prefix="*",
                            max_request_access_duration="PT1H",
                        )
                    ],
                )
            ],
        ),
    )
    ticket = f"CHG-{uuid.uuid4().hex[:6]}"
    message = json.dumps(
        {
            "ticketId": ticket,
            "requester": {"objectId": ALICE.object_id, "displayName": ALICE.username},
            "virtualMachines": [
                {
                    "id": vm_id,
                    "ports": [
                        {
                            "number": 3389,
                            "allowedSourceAddressPrefix": "198.51.100.7",
                            "endTimeUtc": (datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
                        }
                    ],
                }
            ],
            "justification": "from the ticketing system",
        }
    )
    requests_queue = queue(settings.requests_queue, settings)
    send(requests_queue, message)
    send(requests_queue, message)  # a resend of the same ticket
    send(requests_queue, '{"ticketId": "broken"}')
    poison = queue(f"{settings.requests_queue}-poison", settings)
    deadline = time.monotonic() + 30
    tickets: list = []
    poisoned: list = []
    while time.monotonic() < deadline:
        _, grants = get_json(f"{stack.api_url}/grants?vm={vm_id}", stack.headers_for(ALICE))
        tickets = [g for g in grants.get("value", []) if g["ticketId"] == ticket]
        poisoned = list(poison.peek_messages(max_messages=32))
        if tickets and poisoned and requests_queue.get_queue_properties().approximate_message_count == 0:
            break
        time.sleep(0.3)
    assert len(tickets) == 1
    assert tickets[0]["sourceAddressPrefixes"] == ["198.51.100.7"]
    assert any(b"broken" in m.content for m in poisoned)
