"""`make demo`: the whole Portcullis story on the local stack, narrated, exiting 0 when every step
did what it should (and 1, saying which step, when one did not).

Azurite + the ARM emulator + the function app on devhost; an estate with a VM reached directly (NSG
on subnet and NIC), a VM behind a classic Azure Firewall and one behind a Firewall Policy; a
Defender-format JIT policy created through the app's API; a user with a JIT role asks for SSH for
~25 seconds; the rules appear on every hop; connection details; expiry; the network as before.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from demo import snapshot
from demo.client import AppClient, grant_roles
from demo.estate import Estate
from demo.snapshot import ESTATE_NSGS, DemoStepError, our_denies, ports_of, wait_for
from localrig.emulator_client import EmulatorClient
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

        step(5, f"{alice.name} asks for SSH on three VMs for {GRANT_SECONDS} seconds from 203.0.113.7")
        end = datetime.now(UTC) + timedelta(seconds=GRANT_SECONDS)
        answer = app_alice.initiate(
            estate,
            {vm: [(22, "203.0.113.7")] for vm in (estate.vm_web, estate.vm_app, estate.vm_ops)},
            end,
        )
        request_id = answer["requestId"]
        say(f"   202 Accepted, request {request_id}, ports {[p['status'] for p in ports_of(answer)]}")

        step(6, "Converge (queue jit-converge on the host) opens every hop; status turns Initiated")
        started = time.monotonic()
        status = wait_for(
            lambda: (
                (s := app_alice.request_status(request_id))
                and all(p["status"] == "Initiated" for p in ports_of(s))
                and s
            ),
            30,
            "every port Initiated",
        )
        say(f"   all ports Initiated after {time.monotonic() - started:.1f} s")
        for vm in status["virtualMachines"]:
            for port in vm["ports"]:
                connection = port["connection"]
                if not connection:
                    raise DemoStepError(f"no connection details for {vm['id']} port {port['number']}")
                mapped = f" (mapped port {port['mappedPort']})" if port.get("mappedPort") else ""
                name = vm["id"].rsplit("/", 1)[-1]
                say(f"   {name}: connect to {connection['address']}:{connection['port']}{mapped}")
                say(f"       {connection['ssh']}")
                say(f"       {connection['rdp']}")
                say(f"       targets: {json.dumps(port['targets'])}")
        show_rules(arm, estate)

        step(7, f"Wait for the end time ({end:%H:%M:%S} UTC): the grant comes back on the queue and closes")
        final = wait_for(
            lambda: (
                (s := app_alice.request_status(request_id))
                and all(p["status"] == "Revoked" for p in ports_of(s))
                and s
            ),
            GRANT_SECONDS + 60,
            "every port Revoked",
        )
        late = (datetime.now(UTC) - end).total_seconds()
        reasons = sorted({p["statusReason"] for p in ports_of(final)})
        say(f"   every port Revoked ({', '.join(reasons)}), {late:.1f} s after the end time")
        show_rules(arm, estate)

        step(8, "Compare the whole network with its state before the grant")
        after = snapshot.network(arm, estate)
        if after != before:
            raise DemoStepError(f"the network differs from before the grant:\nbefore={before}\nafter={after}")
        say("   identical: every NSG rule and firewall collection is exactly as before the grant")
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
