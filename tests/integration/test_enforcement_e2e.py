"""End to end through the local host (devhost + Azurite + ARM emulator, real SDKs, real queues):
policy -> request -> rules on every NSG and firewall on the path -> connection details -> expiry ->
rules gone and the whole network equal to its state before the grant."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localrig.appclient import AppClient
from localrig.emulator_client import EmulatorClient
from localrig.estates import snapshot
from localrig.estates.roles import grant_roles
from localrig.estates.sample import ESTATE_NSGS, Estate
from localrig.estates.snapshot import our_denies, ports_of, wait_for
from localrig.stack import Stack, start_stack
from shared import enforcement, plan
from shared.settings import load_settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(tmp_path_factory.mktemp("enforcement-stack")) as running:
        yield running


def _writes(arm: EmulatorClient, estate: Estate, since: int) -> list[dict[str, Any]]:
    rg = f"/resourcegroups/{estate.resource_group.lower()}/"
    log = arm.requests_since(since)
    return [r for r in log if r["method"] in ("PUT", "DELETE", "PATCH") and rg in r["path"].lower()]


def test_request_opens_every_hop_then_expiry_restores_the_network(stack: Stack) -> None:
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
    estate = Estate(arm.subscription_id, f"rg-{uuid.uuid4().hex[:8]}")
    arm.seed(estate.resources())
    admin, alice = grant_roles(arm, estate)
    app_admin, app_alice = (
        AppClient(stack.api_url, admin, stack.headers_for),
        AppClient(stack.api_url, alice, stack.headers_for),
    )
    app_admin.put_policy(estate, estate.policy_body())

    # No timer tick, nothing in-process: the PUT hands the policy's targets to the host's converge
    # queue, whose trigger lays the Deny baseline on every NSG in front of the policy's VMs.
    wait_for(
        lambda: all(our_denies(arm, estate, nsg) for nsg in ESTATE_NSGS),
        30,
        "our Deny baseline on every NSG of the estate",
    )
    before = snapshot.network(arm, estate)
    # The foreign rule opening SSH to the Internet ahead of our Deny is reported, not touched.
    legacy = wait_for(
        lambda: [f for f in app_admin.compliance()["value"] if f["ruleName"] == "legacy-ssh"],
        20,
        "the finding about the foreign legacy-ssh rule",
    )
    assert [(f["kind"], f["port"], f["virtualMachineId"]) for f in legacy] == [
        ("PortOpenToInternetAheadOfDeny", 22, estate.vm_id(estate.vm_web))
    ]

    end = datetime.now(UTC) + timedelta(seconds=25)
    answer = app_alice.initiate(
        estate,
        {
            estate.vm_web: [(22, "203.0.113.7")],
            estate.vm_app: [(22, "203.0.113.7")],
            estate.vm_ops: [(22, "203.0.113.7")],
        },
        end,
    )
    request_id = answer["requestId"]
    status = wait_for(
        lambda: (
            (s := app_alice.request_status(request_id))
            and all(p["status"] == "Initiated" for p in ports_of(s))
            and s
        ),
        20,
        "every port Initiated",
    )
    by_vm = {vm["id"].rsplit("/", 1)[-1]: vm["ports"][0] for vm in status["virtualMachines"]}
    web, app, ops = by_vm[estate.vm_web], by_vm[estate.vm_app], by_vm[estate.vm_ops]
    assert (web["connectAddress"], web["connectPort"]) == (estate.web_public_ip, 22)
    assert app["connectAddress"] == estate.classic_fw_public_ip and app["mappedPort"] == app["connectPort"]
    assert ops["connectAddress"] == estate.policy_fw_public_ip and ops["mappedPort"] >= 50001
    assert all(state == "Applied" for port in (web, app, ops) for state in port["targets"].values())
    assert web["connection"] == {
        "address": estate.web_public_ip,
        "port": 22,
        "ssh": f"ssh -p 22 <user>@{estate.web_public_ip}",
        "rdp": f"mstsc /v:{estate.web_public_ip}:22",
    }
    ip, mapped_port = estate.policy_fw_public_ip, ops["mappedPort"]
    assert ops["connection"] == {
        "address": ip,
        "port": mapped_port,
        "ssh": f"ssh -p {mapped_port} <user>@{ip}",
        "rdp": f"mstsc /v:{ip}:{mapped_port}",
    }
    assert app["connection"]["port"] == app["mappedPort"]
    assert len(web["targets"]) == 2 and len(app["targets"]) == 2 and len(ops["targets"]) == 2

    # The rules, hop by hop.
    for nsg in ("nsg-web-subnet", "nsg-web-nic"):
        allows = [
            r
            for r in snapshot.nsg_rules(arm, estate, nsg)
            if r["properties"]["access"] == "Allow" and plan.is_ours(r["name"])
        ]
        assert [
            (r["properties"]["sourceAddressPrefix"], r["properties"]["destinationAddressPrefix"])
            for r in allows
        ] == [("203.0.113.7", "10.0.0.4")]
    (app_allow,) = [
        r
        for r in snapshot.nsg_rules(arm, estate, "nsg-app-nic")
        if r["properties"]["access"] == "Allow" and plan.is_ours(r["name"])
    ]
    assert app_allow["properties"]["sourceAddressPrefix"] == "10.1.1.0/26"  # the firewall subnet
    (ours,) = [c for c in snapshot.classic_nat(arm, estate) if c["name"] == plan.COLLECTION_NAME]
    (dnat,) = ours["properties"]["rules"]
    assert dnat["sourceAddresses"] == ["203.0.113.7"]
    assert dnat["destinationAddresses"] == [estate.classic_fw_public_ip]
    assert dnat["destinationPorts"] == [str(app["mappedPort"])]
    assert (dnat["translatedAddress"], str(dnat["translatedPort"])) == ("10.1.0.4", "22")
    assert plan.RULE_COLLECTION_GROUP_NAME in snapshot.policy_groups(arm, estate)

    # The reconcile timer's pass (run here in-process against the same storage and ARM): the estate
    # is in sync, so it lists and writes nothing; after someone deletes one of our live rules, the
    # pass writes that NSG alone (its targets converge concurrently through the bounded pool).
    deps = enforcement.build_deps(load_settings(stack.env), now=lambda: datetime.now(UTC), sleep=time.sleep)
    start = arm.log_mark()
    enforcement.reconcile_all(deps)
    assert _writes(arm, estate, start) == []
    nic_nsg = arm.resource(estate.nsg_id("nsg-web-nic"))
    nic_nsg["properties"]["securityRules"] = [
        r
        for r in nic_nsg["properties"]["securityRules"]
        if not (plan.is_ours(r["name"]) and r["properties"]["access"] == "Allow")
    ]
    arm.put_resource(estate.nsg_id("nsg-web-nic"), nic_nsg)
    start = arm.log_mark()
    enforcement.reconcile_all(deps)
    assert [w["path"].rsplit("/", 1)[-1] for w in _writes(arm, estate, start)] == ["nsg-web-nic"]
    assert any(
        plan.is_ours(r["name"]) and r["properties"]["access"] == "Allow"
        for r in snapshot.nsg_rules(arm, estate, "nsg-web-nic")
    )

    # Defender's history shows the mapped port.
    history = app_admin.ok("GET", f"{AppClient.policy_path(estate)}?api-version=2020-01-01")["properties"][
        "requests"
    ]
    mapped = {
        vm["id"].rsplit("/", 1)[-1]: p.get("mappedPort")
        for r in history
        for vm in r["virtualMachines"]
        for p in vm["ports"]
    }
    assert mapped == {estate.vm_web: None, estate.vm_app: app["mappedPort"], estate.vm_ops: ops["mappedPort"]}

    # Expiry: the host's converge queue gets the grant back at its end time.
    final = wait_for(
        lambda: (
            (s := app_alice.request_status(request_id))
            and all(p["status"] == "Revoked" for p in ports_of(s))
            and s
        ),
        60,
        "every port Revoked after the end time",
    )
    assert {p["statusReason"] for p in ports_of(final)} == {"Expired"}
    assert all(state == "Removed" for p in ports_of(final) for state in p["targets"].values())
    assert datetime.now(UTC) >= end
    assert snapshot.network(arm, estate) == before
