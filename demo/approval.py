"""The demo's approval round trip (issue 13): the administrator puts an approval rule on one VM,
alice asks for SSH and her request waits (`Pending`, nothing opens), bob approves and the port opens,
then the events the local webhook sink received for that request are printed (requested, pending,
approved and opened, each naming bob as the approver, ...). alice and bob use the `portcullis`
command line, as people would (`request --no-wait`, `approvals list`, `approvals approve`,
`status`). Called once from demo/__main__.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from demo.cli import Cli
from localrig.appclient import AppClient
from localrig.devusers import ADMIN, ALICE, BOB
from localrig.emulator_client import EmulatorClient
from localrig.estates.roles import READER_ROLE, assign_role
from localrig.estates.sample import Estate
from localrig.estates.snapshot import DemoStepError, ports_of, wait_for
from localrig.stack import Stack


def approval_round_trip(
    stack: Stack, arm: EmulatorClient, estate: Estate, say: Callable[[str], None], data_dir: Path
) -> None:
    """Approval on vm-web: alice requests -> Pending; bob approves -> Initiated; the events, printed."""
    say("")
    say(f"== Approvals: {estate.vm_web} needs {BOB.name}'s approval; {ALICE.name} asks, {BOB.name} approves")
    _reader(arm, estate, BOB.object_id)
    admin, alice = (AppClient(stack.api_url, user, stack.headers_for) for user in (ADMIN, ALICE))
    body = estate.policy_body()
    vm_entry = next(
        v for v in body["properties"]["virtualMachines"] if v["id"] == estate.vm_id(estate.vm_web)
    )
    vm_entry["portcullis"] = {
        "approval": {"approvers": [BOB.object_id], "required": 1, "pendingTimeout": "PT15M"}
    }
    admin.put_policy(estate, body)
    say(f'   policy: "portcullis": {{"approval": {{"approvers": ["{BOB.object_id}"], "required": 1}}}}')
    alice_cli = Cli(data_dir / f"cli-{ALICE.name}", say)  # signed in earlier in the story
    bob_cli = Cli(data_dir / f"cli-{BOB.name}", say)
    bob_cli.run(*stack.cli_configure_line().split()[1:], show=False)
    bob_cli.run(*stack.cli_login_line(BOB).split()[1:], show=False)
    request_id = alice_cli.run(
        "request",
        estate.vm_web,
        "--port",
        "22",
        "--duration",
        "2m",
        "--source",
        "203.0.113.7/32",
        "--no-wait",
    ).strip()
    port = ports_of(alice.request_status(request_id))[0]
    if port["status"] != "Pending":
        raise DemoStepError(f"the request should wait for approval, it reads {port['status']}")
    say(f"   {port['status']} ({port['statusReason']}): nothing opens; {BOB.name} signs in and looks")
    bob_cli.run("approvals", "list")
    bob_cli.run("approvals", "approve", request_id, "--comment", "go ahead")
    wait_for(
        lambda: all(p["status"] == "Initiated" for p in ports_of(alice.request_status(request_id))),
        30,
        "the approved port Initiated",
    )
    alice_cli.run("status", request_id, "--user", "azureuser")
    sink = stack.webhook_sink
    if sink is not None:
        sink.wait_for(request_id, "com.portcullis.grant.opened", timeout=20)
        say("   events the webhook sink received for this request:")
        sink.print_received(request_id)
        opened = [r["event"] for r in sink.received_for(request_id) if r["event"]["type"].endswith(".opened")]
        if not any(a.get("objectId") == BOB.object_id for e in opened for a in e["data"]["approvers"]):
            raise DemoStepError(f"the grant.opened event should name {BOB.name} as its approver")
    alice_cli.run("revoke", request_id)
    say(f"   {ALICE.name} revoked it again (the demo leaves nothing open)")


def _reader(arm: EmulatorClient, estate: Estate, object_id: str) -> None:
    """Reader on the resource group: an approver must be able to read the policy they decide under."""
    from azure.mgmt.authorization import AuthorizationManagementClient

    auth = arm.client(AuthorizationManagementClient)
    assign_role(auth, arm.subscription_id, estate.scope, READER_ROLE, object_id)
