"""The demo's approval round trip (issue 13): the administrator puts an approval rule on one VM,
alice asks for SSH and her request waits (`Pending`, nothing opens), bob approves and the port opens,
then the events the local webhook sink received for that request are printed (requested, pending,
approved with bob named, opened, ...). Called once from demo/__main__.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from localrig.appclient import AppClient
from localrig.devusers import ADMIN, ALICE, BOB
from localrig.emulator_client import EmulatorClient
from localrig.estates.roles import READER_ROLE, assign_role
from localrig.estates.sample import Estate
from localrig.estates.snapshot import DemoStepError, ports_of, wait_for
from localrig.stack import Stack


def approval_round_trip(
    stack: Stack, arm: EmulatorClient, estate: Estate, say: Callable[[str], None]
) -> None:
    """Approval on vm-web: alice requests -> Pending; bob approves -> Initiated; the events, printed."""
    say("")
    say(f"== Approvals: {estate.vm_web} needs {BOB.name}'s approval; {ALICE.name} asks, {BOB.name} approves")
    _reader(arm, estate, BOB.object_id)
    admin, alice, bob = (AppClient(stack.api_url, user, stack.headers_for) for user in (ADMIN, ALICE, BOB))
    body = estate.policy_body()
    vm_entry = next(
        v for v in body["properties"]["virtualMachines"] if v["id"] == estate.vm_id(estate.vm_web)
    )
    vm_entry["portcullis"] = {
        "approval": {"approvers": [BOB.object_id], "required": 1, "pendingTimeout": "PT15M"}
    }
    admin.put_policy(estate, body)
    say(f'   policy: "portcullis": {{"approval": {{"approvers": ["{BOB.object_id}"], "required": 1}}}}')
    answer = alice.initiate(
        estate, {estate.vm_web: [(22, "203.0.113.7")]}, datetime.now(UTC) + timedelta(minutes=2)
    )
    request_id = answer["requestId"]
    port = ports_of(answer)[0]
    say(f"   {ALICE.name}'s request {request_id}: {port['status']} ({port['statusReason']}); nothing opens")
    if port["status"] != "Pending":
        raise DemoStepError(f"the request should wait for approval, it reads {port['status']}")
    waiting = bob.ok("GET", "/requests?status=Pending&approver=me")["value"]
    say(
        f"   {BOB.name}'s list (GET /api/requests?status=Pending&approver=me): "
        f"{[r['requestId'] for r in waiting]}"
    )
    bob.ok("POST", f"/requests/{request_id}/approve", {"comment": "go ahead"})
    wait_for(
        lambda: all(p["status"] == "Initiated" for p in ports_of(alice.request_status(request_id))),
        30,
        "the approved port Initiated",
    )
    approval = alice.request_status(request_id)["approval"]
    decided = ", ".join(f"{d['displayName']} {d['verdict']} ({d['comment']})" for d in approval["decisions"])
    say(f"   approved by {decided}: port Initiated")
    sink = stack.webhook_sink
    if sink is not None:
        sink.wait_for(request_id, "com.portcullis.grant.opened", timeout=20)
        say("   events the webhook sink received for this request:")
        sink.print_received(request_id)
    alice.ok("DELETE", f"/requests/{request_id}")
    say(f"   {ALICE.name} revoked it again (the demo leaves nothing open)")


def _reader(arm: EmulatorClient, estate: Estate, object_id: str) -> None:
    """Reader on the resource group: an approver must be able to read the policy they decide under."""
    from azure.mgmt.authorization import AuthorizationManagementClient

    auth = arm.client(AuthorizationManagementClient)
    assign_role(auth, arm.subscription_id, estate.scope, READER_ROLE, object_id)
