"""`make demo`: the whole Portcullis story on the local stack, narrated, exiting 0 when every step
did what it should (and 1, saying which step, when one did not).

Azurite + the ARM emulator + the function app on devhost; an estate with a VM reached directly (NSG
on subnet and NIC), a VM behind a classic Azure Firewall and one behind a Firewall Policy; a
Defender-format JIT policy created through the app's API; a user with a JIT role signs in with the
`portcullis` command line and asks for SSH for ~25 seconds with it; the rules appear on every hop;
the connection lines; an early revoke; expiry; the network as before.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from demo.approval import approval_round_trip
from demo.cli import Cli, let_read_policies
from localrig.appclient import AppClient
from localrig.emulator_client import EmulatorClient
from localrig.estates import snapshot
from localrig.estates.roles import grant_roles
from localrig.estates.sample import ESTATE_NSGS, Estate
from localrig.estates.snapshot import DemoStepError, our_denies, ports_of, wait_for
from localrig.processes import PROJECT_ROOT
from localrig.stack import start_stack
from shared import plan

GRANT_SECONDS = int(os.environ.get("PORTCULLIS_DEMO_GRANT_SECONDS", "25"))


def say(text: str = "") -> None:
    print(text, flush=True)


def step(number: int, text: str) -> None:
    say()
    say(f"== {number}. {text}")


def show_rules(arm: EmulatorClient, estate: Estate) -> None:
    for nsg in ESTATE_NSGS:
        say(f"   NSG {nsg}:")
        for rule in sorted(snapshot.nsg_rules(arm, estate, nsg), key=lambda r: r["properties"]["priority"]):
            p = rule["properties"]
            owner = "ours   " if plan.owns_rule(rule["name"], p.get("description")) else "foreign"
            source = p.get("sourceAddressPrefix") or ",".join(p.get("sourceAddressPrefixes", []))
            dest = p.get("destinationAddressPrefix") or ",".join(p.get("destinationAddressPrefixes", []))
            port = p.get("destinationPortRange")
            head = f"     [{owner}] {p['priority']:>4} {p['access']:<5}"
            say(f"{head} {source:>15} -> {dest}:{port}  {rule['name']}")
    for collection in snapshot.classic_nat(arm, estate):
        owner = "ours   " if plan.is_our_collection(collection["name"]) else "foreign"
        props = collection["properties"]
        name, priority = collection["name"], props["priority"]
        say(f"   firewall fw-classic NAT collection [{owner}] {name} (priority {priority}):")
        for rule in props.get("rules") or []:
            source = ",".join(rule["sourceAddresses"])
            front = f"{rule['destinationAddresses'][0]}:{rule['destinationPorts'][0]}"
            back = f"{rule['translatedAddress']}:{rule['translatedPort']}"
            say(f"     {source} -> {front} => {back}  {rule['name']}")
    say(f"   firewall policy fwpol rule collection groups: {', '.join(snapshot.policy_groups(arm, estate))}")


def story(data_dir: Path) -> None:
    step(1, "Start the local stack: Azurite, the ARM emulator, the function app on devhost")
    with start_stack(data_dir) as stack:
        say(f"   app {stack.api_url}   ARM emulator {stack.emulator.base_url}")
        say(f"   web page {stack.page_url} (with `make up`: sign in as a dev user and request access)")
        arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
        estate = Estate(arm.subscription_id, f"rg-demo-{uuid.uuid4().hex[:6]}")

        step(2, f"Seed an estate in resource group {estate.resource_group}")
        arm.seed(estate.resources())
        say(f"   {estate.vm_web}: NSG on subnet and NIC, public IP {estate.web_public_ip}")
        say(f"   {estate.vm_db}: same subnet, subnet NSG only")
        say(f"   {estate.vm_app}: behind classic Azure Firewall fw-classic ({estate.classic_fw_public_ip})")
        say(f"   {estate.vm_ops}: behind fw-policy, Firewall Policy fwpol ({estate.policy_fw_public_ip})")
        admin, alice = grant_roles(arm, estate)
        say(f"   role assignments: {admin.name} owns the group; {alice.name} may initiate JIT on the VMs")

        step(3, "The administrator creates a Defender-format JIT policy through the app's API")
        app_admin, app_alice = (
            AppClient(stack.api_url, admin, stack.headers_for),
            AppClient(stack.api_url, alice, stack.headers_for),
        )
        app_admin.put_policy(estate, estate.policy_body())
        say(f"   PUT {AppClient.policy_path(estate)}  (SSH 22 on all four VMs, RDP 3389 on {estate.vm_web})")

        step(4, "The host's converge queue lays the Deny baseline for every policy port")
        started = time.monotonic()
        wait_for(lambda: all(our_denies(arm, estate, nsg) for nsg in ESTATE_NSGS), 60, "our Deny baseline")
        say(f"   Deny baseline on {len(ESTATE_NSGS)} NSGs after {time.monotonic() - started:.1f} s")
        show_rules(arm, estate)
        findings = wait_for(
            lambda: (
                (f := app_admin.compliance()["value"]) and any(x["ruleName"] == "legacy-ssh" for x in f) and f
            ),
            30,
            "the compliance finding about the foreign 'legacy-ssh' rule",
        )
        before = snapshot.network(arm, estate)
        say(f"   compliance findings (GET /api/compliance): {len(findings)}")
        for finding in findings:
            say(f"     {finding['kind']}: {finding['detail']}")

        step(5, f"{alice.name} signs in with the portcullis command line and lists what she may request")
        let_read_policies(arm, estate, alice)
        cli = Cli(data_dir / f"cli-{alice.name}", say)
        cli.run(*stack.cli_configure_line().split()[1:], show=False)
        say(f"   (configured as `make up` prints: {stack.cli_configure_line()})")
        cli.run(*stack.cli_login_line(alice).split()[1:])
        cli.run("vm", "list")

        source = "203.0.113.7/32"
        step(6, f"{alice.name} asks for SSH on three VMs for {GRANT_SECONDS} seconds from {source}")
        say("   (each command waits until enforcement has opened every hop, then prints how to connect)")
        expected = {
            estate.vm_web: estate.web_public_ip,
            estate.vm_app: estate.classic_fw_public_ip,
            estate.vm_ops: estate.policy_fw_public_ip,
        }
        requests: dict[str, str] = {}
        started = time.monotonic()
        end = datetime.now(UTC) + timedelta(seconds=GRANT_SECONDS)
        for vm, address in expected.items():
            line = cli.run(
                "request", vm, "--port", "22", "--until", end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "--source", source, "--user", "azureuser",
                "--justification", "incident INC-4711: check the disk",
            ).strip()  # fmt: skip
            if not line.startswith("ssh -p ") or not line.endswith(f"azureuser@{address}"):
                raise DemoStepError(f"{vm}: the connection line {line!r} does not name {address}")
            mine = cli.json("list", "--mine", "--active", "--vm", vm)
            requests[vm] = mine[0]["requestId"]
        say(f"   three grants Initiated, rules on every hop, after {time.monotonic() - started:.1f} s")
        cli.run("status", requests[estate.vm_app], "--user", "azureuser")
        show_rules(arm, estate)

        step(7, f"{alice.name} is done with {estate.vm_web} early and revokes it")
        cli.run("revoke", requests[estate.vm_web])
        web_grant = app_alice.request_status(requests[estate.vm_web])["virtualMachines"][0]["ports"][0]
        wait_for(
            lambda: (
                not any(
                    web_grant["grantId"] in rule["name"]
                    for rule in snapshot.nsg_rules(arm, estate, "nsg-web-subnet")
                )
            ),
            30,
            f"the Allow rule of {estate.vm_web} gone",
        )
        say(f"   {estate.vm_web}'s rules are gone; the other two stay open until their end time")

        step(8, f"Wait for the end time ({end:%H:%M:%S} UTC): the grants come back on the queue and close")
        finals = [
            wait_for(
                lambda request_id=request_id: (
                    (s := app_alice.request_status(request_id))
                    and all(p["status"] == "Revoked" for p in ports_of(s))
                    and s
                ),
                GRANT_SECONDS + 60,
                "every port Revoked",
            )
            for request_id in requests.values()
        ]
        late = (datetime.now(UTC) - end).total_seconds()
        reasons = sorted({p["statusReason"] for final in finals for p in ports_of(final)})
        say(f"   every port Revoked ({', '.join(reasons)}), {late:.1f} s after the end time")
        cli.run("list", "--mine")
        show_rules(arm, estate)

        step(9, "Compare the whole network with its state before the grants")
        after = snapshot.network(arm, estate)
        if after != before:
            raise DemoStepError(f"the network differs from before the grant:\nbefore={before}\nafter={after}")
        say("   identical: every NSG rule and firewall collection is exactly as before the grant")
        approval_round_trip(stack, arm, estate, say, data_dir)
    say()
    say("Demo complete.")


def main() -> int:
    data_dir = PROJECT_ROOT / ".demo" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    try:
        story(data_dir)
    except DemoStepError as failure:
        say(f"\nDEMO FAILED: {failure}\n(logs in {data_dir})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
