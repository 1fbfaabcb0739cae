"""Hypothesis stateful test of enforcement against the ARM emulator and Azurite (real SDKs).

It interleaves requests (with supersede), requests pending approval, approvals, denials, lapses
and extensions (shared/actions/approvals.py on the same store), revokes, clock advances, drift
edits behind the app's back, emulator faults (409, 412, 429, 5xx, failed long-running operations),
lost messages, crashes between any two steps of converge, snapshot-driven reconcile passes
(differing targets converged concurrently) and a host dying in the middle of such a pass, then lets
the safety nets run (expiry sweep + reconcile) and checks the invariants of ../shared/DESIGN.md:

1. no rule of ours without an open grant (expired/revoked rules are gone one timer period later);
2. every open grant has its rules on every target on its path, and is Initiated only then;
3. no foreign rule changed (other than by the test's own "someone else" edits);
plus: the Deny baseline exists for every policy port, and closed grants read Revoked + Removed;
and nothing is open without an approved, unexpired grant (a pending, denied or lapsed request's
grants have no rule anywhere).

`make test` runs 10 examples of 10 steps (PORTCULLIS_STATEFUL_FAST_EXAMPLES to change);
`PORTCULLIS_STATEFUL_EXAMPLES=500 pytest -m slow tests/stateful` runs the long mode (30 steps each).
PORTCULLIS_STATEFUL_NO_SHRINK=1 skips shrinking (a failure prints its unshrunk steps at once).
"""

from __future__ import annotations

import copy
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import pytest
from azure.core.exceptions import AzureError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from localrig.emulator_client import EmulatorClient
from localrig.estates.sample import Estate
from shared import enforcement, plan
from shared.actions.approvals import Approvals, lapse_due
from shared.actions.refusal import Refusal
from shared.approval import ApprovalStatus, Verdict, new_pending
from shared.audit import TableAuditTrail
from shared.authz import Authorizer
from shared.defender import parse_policy_body
from shared.grants import RequestRecord, TableGrantStore, grant_id, new_request_id
from shared.identity import Authenticator
from shared.model import (
    ApprovalPolicy,
    Grant,
    PolicyRef,
    PortStatus,
    Principal,
    PrincipalSource,
    StatusReason,
    TargetRef,
    TargetState,
    TransportProtocol,
    VmRef,
)
from shared.policy_store import TablePolicyStore
from shared.services import Services
from shared.settings import load_settings
from shared.topology import TopologyResolver
from tests.fakes import Roles

LONG_EXAMPLES = int(os.environ.get("PORTCULLIS_STATEFUL_EXAMPLES", "0"))
CRASH_STEPS = ("leased", "read", "planned", "written", "allocated", "recording")
NSGS = ("nsg-web-subnet", "nsg-web-nic", "nsg-app-nic", "nsg-ops-nic")
VMS = ("vm-web", "vm-app", "vm-ops")
LEASE_SECONDS = 15
REQUESTER = Principal("a11ce000-0000-4000-8000-000000000001", "alice", PrincipalSource.EASY_AUTH)
APPROVER = Principal("b0b00000-0000-4000-8000-000000000002", "bob", PrincipalSource.EASY_AUTH)
SECOND = Principal("ca401000-0000-4000-8000-000000000006", "carol", PrincipalSource.EASY_AUTH)


class Crash:
    def __init__(self) -> None:
        self.at: str | None = None
        self._lock = threading.Lock()

    def __call__(self, step: str) -> None:
        with self._lock:  # a pass converges targets on several threads: only one crashes
            if self.at != step:
                return
            self.at = None
        raise enforcement.SimulatedCrash(step)


def build_machine(
    arm: EmulatorClient, storage_env: Callable[[], dict[str, str]]
) -> type[RuleBasedStateMachine]:
    class EnforcementMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.estate = Estate(arm.subscription_id, f"rg-st-{uuid.uuid4().hex[:10]}")
            arm.seed(self.estate.resources())
            self.settings = load_settings(
                {
                    **storage_env(),
                    "PORTCULLIS_ARM_ENDPOINT": arm.base_url,
                    "PORTCULLIS_ARM_CA_BUNDLE": str(arm.ca_file),
                    "PORTCULLIS_ARM_CREDENTIAL": "static-token",
                    "PORTCULLIS_ARM_POLLING_INTERVAL": "0",
                    "PORTCULLIS_CONVERGE_LEASE_SECONDS": str(LEASE_SECONDS),
                    "PORTCULLIS_NSG_ALLOW_PRIORITIES": "3000-3019",
                }
            )
            self.moment = datetime.now(UTC).replace(microsecond=0)
            self.crash = Crash()

            # The real SDK, with azure-core's own retries kept short: our converge loop is under test.
            @lru_cache(maxsize=4)
            def network(sub: str) -> Any:
                return arm.client(NetworkManagementClient, sub, retry_total=1, retry_backoff_factor=0.01)

            @lru_cache(maxsize=4)
            def compute(sub: str) -> Any:
                return arm.client(ComputeManagementClient, sub, retry_total=1, retry_backoff_factor=0.01)

            self.deps = enforcement.build_deps(
                self.settings,
                now=lambda: self.moment,
                sleep=lambda seconds: None,
                network=network,
                compute=compute,
                topology=TopologyResolver(network, compute),
            )
            self.deps.checkpoint = self.crash
            self.store = self.deps.store
            assert isinstance(self.store, TableGrantStore)
            self.policy_ref = PolicyRef(
                self.estate.subscription_id, self.estate.resource_group, "westeurope", "default"
            )
            _, canonical = parse_policy_body(self.estate.policy_body(), self.policy_ref)
            TablePolicyStore(self.settings).put(self.policy_ref, canonical)
            self.grant_ids: list[str] = []
            self.request_ids: list[str] = []  # requests made under an approval rule
            # The request side over the same store: everyone may do everything (RBAC is not under
            # test here); converge messages are delivered or lost at the rule's choice.
            roles = Roles()
            for principal in (REQUESTER, APPROVER, SECOND):
                roles.grant(principal.object_id, f"/subscriptions/{self.estate.subscription_id}", "*")
            self.deliver = False
            machine = self

            class Converge:
                def notify(self, grant_id: str, *, visible_at: datetime | None = None) -> None:
                    if machine.deliver and visible_at is None:
                        machine._attempt(lambda: enforcement.handle_grant(machine.deps, grant_id))

                def policy_changed(self, policy_id: str, *versions: Any) -> None:
                    return None

            self.services = Services(
                settings=self.settings,
                policies=TablePolicyStore(self.settings),
                grants=self.store,
                audit=TableAuditTrail(self.settings, lambda: self.moment),
                authenticator=Authenticator(self.settings),
                authorizer=Authorizer(lambda sub: roles, cache_seconds=0),
                converge=Converge(),
                clock=lambda: self.moment,
            )
            self.rg_pattern = f"/resourceGroups/{self.estate.resource_group}/"
            self.targets = [TargetRef.from_key(f"nsg|{self.estate.nsg_id(n)}") for n in NSGS] + [
                TargetRef.from_key(f"firewall-classic|{self.estate.classic_firewall_id}"),
                TargetRef.from_key(f"firewall-policy|{self.estate.firewall_policy_id}"),
            ]
            # Everything converges once (baseline), then foreign rules are what they must stay.
            self._run_safety_nets()
            self.foreign = self._foreign_state()

        # ---- helpers ----

        def _attempt(self, action: Callable[[], object]) -> None:
            """A trigger run: ARM refusing or the process crashing leaves the work for a retry/timer."""
            try:
                action()
            except (AzureError, enforcement.TargetWriteError):
                pass
            except enforcement.SimulatedCrash:
                pass

        def _run_safety_nets(self) -> None:
            arm.clear_faults()
            self.crash.at = None
            # A crashed holder's lease expires; then both timers tick once.
            self.moment += timedelta(seconds=LEASE_SECONDS + 1)
            enforcement.sweep_expired(self.deps)
            enforcement.reconcile_all(self.deps)

        def _foreign_state(self) -> dict[str, Any]:
            state: dict[str, Any] = {}
            for nsg in NSGS:
                rules = arm.resource(self.estate.nsg_id(nsg))["properties"].get("securityRules") or []
                state[nsg] = sorted(
                    (_clean(r) for r in rules if not plan.is_ours(r["name"])), key=lambda r: r["name"]
                )
            fw = arm.resource(self.estate.classic_firewall_id)["properties"].get("natRuleCollections") or []
            state["fw-classic"] = sorted(
                (_clean(c) for c in fw if not plan.is_ours(c["name"])), key=lambda c: c["name"]
            )
            groups = (
                arm.resource(self.estate.firewall_policy_id)["properties"].get("ruleCollectionGroups") or []
            )
            state["fwpol"] = sorted(
                g["id"].rsplit("/", 1)[-1] for g in groups if not plan.is_ours(g["id"].rsplit("/", 1)[-1])
            )
            return state

        def _grants(self) -> list[Grant]:
            return [g for gid in self.grant_ids if (g := self.store.get(gid)) is not None]

        # ---- rules ----

        @rule(
            vm=st.sampled_from(VMS),
            port=st.sampled_from((22, 3389)),
            minutes=st.integers(1, 8),
            source=st.sampled_from(("203.0.113.7", "198.51.100.0/28")),
            deliver=st.booleans(),
        )
        def request(self, vm: str, port: int, minutes: int, source: str, deliver: bool) -> None:
            if port == 3389 and vm != "vm-web":
                port = 22
            vm_ref = VmRef.parse(self.estate.vm_id(vm))
            # Intake supersedes an older open grant on the same VM and port.
            for older in self._grants():
                same_requester = older.requester.object_id == REQUESTER.object_id
                if (
                    older.vm == vm_ref
                    and older.port == port
                    and older.is_open_at(self.moment)
                    and same_requester
                ):
                    self.store.update(
                        replace(
                            older,
                            status=PortStatus.REVOKED,
                            status_reason=StatusReason.NEWER_REQUEST_INITIATED,
                        )
                    )
                    if deliver:
                        self._attempt(lambda gid=older.grant_id: enforcement.handle_grant(self.deps, gid))
            request_id = new_request_id()
            requester = REQUESTER
            grant = Grant(
                grant_id=grant_id(request_id, 0),
                request_id=request_id,
                policy=self.policy_ref,
                vm=vm_ref,
                port=port,
                protocol=TransportProtocol.TCP,
                source_prefixes=(source,),
                start_time=self.moment,
                end_time=self.moment + timedelta(minutes=minutes),
                requester=requester,
                justification=None,
                ticket_id=None,
            )
            self.store.create_request(
                RequestRecord(request_id, self.policy_ref, requester, self.moment, None, None, "x"), [grant]
            )
            self.grant_ids.append(grant.grant_id)
            if deliver:
                self._attempt(lambda: enforcement.handle_grant(self.deps, grant.grant_id))

        @rule(
            vm=st.sampled_from(VMS),
            minutes=st.integers(1, 8),
            required=st.integers(1, 2),
        )
        def request_pending(self, vm: str, minutes: int, required: int) -> None:
            """A request under an approval rule: recorded Pending, nothing handed to enforcement."""
            vm_ref = VmRef.parse(self.estate.vm_id(vm))
            request_id = new_request_id()
            rule_ = ApprovalPolicy((APPROVER.object_id, SECOND.object_id), required, timedelta(minutes=10))
            grant = Grant(
                grant_id=grant_id(request_id, 0),
                request_id=request_id,
                policy=self.policy_ref,
                vm=vm_ref,
                port=22,
                protocol=TransportProtocol.TCP,
                source_prefixes=("203.0.113.7",),
                start_time=self.moment,
                end_time=self.moment + timedelta(minutes=minutes),
                requester=REQUESTER,
                justification=None,
                ticket_id=None,
                status=PortStatus.PENDING,
            )
            record = RequestRecord(
                request_id,
                self.policy_ref,
                REQUESTER,
                self.moment,
                None,
                None,
                "x",
                approval=new_pending(rule_, self.moment),
            )
            self.store.create_request(record, [grant])
            self.grant_ids.append(grant.grant_id)
            self.request_ids.append(request_id)

        @precondition(lambda self: bool(self.request_ids))
        @rule(index=st.integers(0, 50), who=st.sampled_from(("first", "second")), deliver=st.booleans())
        def approve(self, index: int, who: str, deliver: bool) -> None:
            self._decide(index, APPROVER if who == "first" else SECOND, Verdict.APPROVED, deliver)

        @precondition(lambda self: bool(self.request_ids))
        @rule(index=st.integers(0, 50), deliver=st.booleans())
        def deny(self, index: int, deliver: bool) -> None:
            self._decide(index, SECOND, Verdict.DENIED, deliver)

        def _decide(self, index: int, who: Principal, verdict: Verdict, deliver: bool) -> None:
            request_id = self.request_ids[index % len(self.request_ids)]
            self.deliver = deliver
            try:
                Approvals(self.services, who).decide(request_id, verdict, None)
            except Refusal:
                pass  # lapsed, decided already, nothing waiting: refused, nothing changes
            except (AzureError, enforcement.TargetWriteError, enforcement.SimulatedCrash):
                pass
            finally:
                self.deliver = False

        @rule()
        def lapse_timer(self) -> None:
            self._attempt(lambda: lapse_due(self.services))

        @precondition(lambda self: bool(self.grant_ids))
        @rule(index=st.integers(0, 50), minutes=st.integers(1, 10), deliver=st.booleans())
        def extend(self, index: int, minutes: int, deliver: bool) -> None:
            """The requester extends (in place; on an approval request, it waits for approval)."""
            grant = self.store.get(self.grant_ids[index % len(self.grant_ids)])
            if grant is None:
                return
            self.deliver = deliver
            try:
                Approvals(self.services, grant.requester).extend(
                    grant.request_id, grant.end_time + timedelta(minutes=minutes)
                )
            except Refusal:
                pass  # closed, beyond the maximum, or an extension already waits
            except (AzureError, enforcement.TargetWriteError, enforcement.SimulatedCrash):
                pass
            finally:
                self.deliver = False

        @precondition(lambda self: bool(self.grant_ids))
        @rule(index=st.integers(0, 50), deliver=st.booleans())
        def revoke(self, index: int, deliver: bool) -> None:
            grant = self.store.get(self.grant_ids[index % len(self.grant_ids)])
            if grant is None or grant.status is PortStatus.REVOKED:
                return
            self.store.update(
                replace(grant, status=PortStatus.REVOKED, status_reason=StatusReason.USER_REQUESTED)
            )
            if deliver:
                self._attempt(lambda: enforcement.handle_grant(self.deps, grant.grant_id))

        @rule(seconds=st.sampled_from((20, 90, 300, 600)))
        def advance_clock(self, seconds: int) -> None:
            self.moment += timedelta(seconds=seconds)

        @rule(index=st.integers(0, 5))
        def converge_target(self, index: int) -> None:
            """A ConvergeTarget hint delivered (or a duplicate of one)."""
            self._attempt(lambda: enforcement.converge(self.deps, self.targets[index]))

        @rule()
        def expiry_timer(self) -> None:
            self._attempt(lambda: enforcement.sweep_expired(self.deps))

        @rule()
        def reconcile_timer(self) -> None:
            """A snapshot-driven pass at any moment (faults and stale leases included): it converges
            only differing targets, several at once."""
            self._attempt(lambda: enforcement.reconcile_all(self.deps))

        @rule(step=st.sampled_from(CRASH_STEPS))
        def host_dies_during_reconcile(self, step: str) -> None:
            """The host dies while a pass converges its differing targets concurrently: the first to
            reach `step` stops there, leaving its lease; the next pass or hint finishes the work."""
            self.crash.at = step
            self._attempt(lambda: enforcement.reconcile_all(self.deps))
            self.crash.at = None

        @rule(step=st.sampled_from(CRASH_STEPS), index=st.integers(0, 5))
        def crash_mid_converge(self, step: str, index: int) -> None:
            self.crash.at = step
            self._attempt(lambda: enforcement.converge(self.deps, self.targets[index]))
            self.crash.at = None

        @rule(
            status=st.sampled_from((409, 412, 429, 500, 503, None)),
            count=st.integers(1, 3),
            what=st.sampled_from(("networkSecurityGroups", "azureFirewalls", "ruleCollectionGroups")),
            method=st.sampled_from(("PUT", "GET", "DELETE")),
        )
        def fault(self, status: int | None, count: int, what: str, method: str) -> None:
            fault: dict[str, Any] = {
                "method": method,
                "path": f"(?i){self.rg_pattern}.*{what}",
                "count": count,
            }
            if status is None:
                fault.update(method="PUT", lro_fail=True, code="InternalServerError")
            else:
                codes = {
                    409: "AnotherOperationInProgress",
                    412: "PreconditionFailed",
                    429: "RetryableErrorDueToAnotherOperation",
                    500: "InternalServerError",
                    503: "ServiceUnavailable",
                }
                fault.update(status=status, code=codes[status], retry_after=0 if status == 429 else None)
            arm.add_fault(**fault)

        @rule(
            nsg=st.sampled_from(NSGS),
            edit=st.sampled_from(("delete_ours", "widen_ours", "flip_ours", "fake_ours", "foreign")),
            pick=st.integers(0, 10),
        )
        def drift_nsg(self, nsg: str, edit: str, pick: int) -> None:
            resource_id = self.estate.nsg_id(nsg)
            body = copy.deepcopy(arm.resource(resource_id))
            rules = body["properties"].setdefault("securityRules", [])
            # Our Allow rules first: they are what a grant's user depends on.
            ours = sorted(
                (r for r in rules if plan.is_ours(r["name"])),
                key=lambda r: r["properties"]["access"] != "Allow",
            )
            victim = (ours[pick % len(ours)] if pick < 7 else ours[0]) if ours else None
            if edit == "delete_ours" and victim:
                rules.remove(victim)
            elif edit == "widen_ours" and victim:
                victim["properties"]["sourceAddressPrefix"] = "*"
                victim["properties"].pop("sourceAddressPrefixes", None)
                victim["properties"]["destinationPortRange"] = "0-65535"
            elif edit == "flip_ours" and victim:
                flipped = "Deny" if victim["properties"]["access"] == "Allow" else "Allow"
                victim["properties"]["access"] = flipped
            elif edit == "fake_ours":
                used = {r["properties"]["priority"] for r in rules}
                free = next(p for p in range(3020, 3499) if p not in used)
                rules.append(
                    {
                        "name": f"Portcullis-JIT-Allow-22-hand-made-{uuid.uuid4().hex[:6]}",
                        "properties": {
                            "priority": free,
                            "access": "Allow",
                            "direction": "Inbound",
                            "protocol": "Tcp",
                            "sourcePortRange": "*",
                            "sourceAddressPrefix": "*",
                            "destinationAddressPrefix": "*",
                            "destinationPortRange": "22",
                            "description": "portcullis:grant=forged;exp=2099-01-01T00:00:00Z",
                        },
                    }
                )
            elif edit == "foreign":
                used = {r["properties"]["priority"] for r in rules}
                free = next(p for p in range(500, 900) if p not in used)
                rules.append(
                    {
                        "name": f"people-{uuid.uuid4().hex[:6]}",
                        "properties": {
                            "priority": free,
                            "access": "Allow",
                            "direction": "Inbound",
                            "protocol": "Tcp",
                            "sourcePortRange": "*",
                            "sourceAddressPrefix": "10.0.0.0/8",
                            "destinationAddressPrefix": "*",
                            "destinationPortRange": "8080",
                            "description": "someone else's",
                        },
                    }
                )
            else:
                return
            arm.put_resource(resource_id, body)
            if edit == "foreign":
                self.foreign = self._foreign_state()

        @rule(edit=st.sampled_from(("delete_ours", "widen_ours")))
        def drift_firewall(self, edit: str) -> None:
            body = copy.deepcopy(arm.resource(self.estate.classic_firewall_id))
            collections = body["properties"].get("natRuleCollections") or []
            ours = [c for c in collections if plan.is_ours(c["name"])]
            if not ours:
                return
            if edit == "delete_ours":
                collections.remove(ours[0])
            elif ours[0]["properties"].get("rules"):
                ours[0]["properties"]["rules"][0]["sourceAddresses"] = ["*"]
            arm.put_resource(self.estate.classic_firewall_id, body)

        # ---- what must always hold ----

        @invariant()
        def initiated_grants_had_every_target_applied(self) -> None:
            for grant in self._grants():
                if grant.status is PortStatus.INITIATED:
                    assert grant.targets and all(
                        s in (TargetState.APPLIED, TargetState.FAILED, TargetState.REMOVED)
                        for s in grant.targets.values()
                    )

        @invariant()
        def nothing_opens_without_an_approved_request(self) -> None:
            for request_id in self.request_ids:
                stored = self.store.get_request(request_id)
                assert stored is not None and stored.record.approval is not None
                status = stored.record.approval.status
                for grant in stored.grants:
                    if status not in (ApprovalStatus.APPROVED, ApprovalStatus.BREAK_GLASS):
                        assert grant.status in (PortStatus.PENDING, PortStatus.REVOKED), (status, grant)
                        assert not grant.targets and not grant.is_open_at(self.moment), grant
                    if grant.status is PortStatus.PENDING:
                        assert not grant.targets and status is ApprovalStatus.PENDING, (status, grant)

        def teardown(self) -> None:
            try:
                self._run_safety_nets()
                self._check_converged()
            finally:
                arm.clear_faults()

        def _check_converged(self) -> None:
            now = self.moment
            grants = self._grants()
            open_grants = [g for g in grants if g.is_open_at(now)]
            estate = self.estate
            # 3. Foreign rules unchanged.
            assert self._foreign_state() == self.foreign
            # Per NSG: exactly the Allow rules of open grants whose path crosses it, plus the baseline.
            path_nsgs = {
                "vm-web": ("nsg-web-subnet", "nsg-web-nic"),
                "vm-app": ("nsg-app-nic",),
                "vm-ops": ("nsg-ops-nic",),
            }
            private_ip = {"vm-web": "10.0.0.4", "vm-app": "10.1.0.4", "vm-ops": "10.2.0.4"}
            firewall_subnet = {"vm-app": "10.1.1.0/26", "vm-ops": "10.2.1.0/26"}
            for nsg in NSGS:
                rules = arm.resource(estate.nsg_id(nsg))["properties"].get("securityRules") or []
                ours = {r["name"]: r["properties"] for r in rules if plan.is_ours(r["name"])}
                allows = {n for n, p in ours.items() if p["access"] == "Allow"}
                expected = {plan.allow_rule_name(g) for g in open_grants if nsg in path_nsgs[g.vm.name]}
                assert allows == expected, (nsg, allows, expected)
                for grant in open_grants:
                    if nsg in path_nsgs[grant.vm.name]:
                        props = ours[plan.allow_rule_name(grant)]
                        source = firewall_subnet.get(grant.vm.name, grant.source_prefixes[0])
                        actual = (
                            props["access"],
                            props["sourceAddressPrefix"],
                            props["destinationAddressPrefix"],
                            props["destinationPortRange"],
                            props["protocol"],
                        )
                        assert actual == ("Allow", source, private_ip[grant.vm.name], str(grant.port), "Tcp")
                        marker = plan.parse_marker(props["description"])
                        assert marker is not None and marker.grant_id == grant.grant_id
                        assert marker.expires == grant.end_time
                for name, props in ours.items():
                    if name not in allows:
                        assert (props["access"], props["sourceAddressPrefix"], props["protocol"]) == (
                            "Deny",
                            "*",
                            "Tcp",
                        ), props
                denies = {
                    (p["destinationAddressPrefix"], p["destinationPortRange"])
                    for n, p in ours.items()
                    if n not in allows
                }
                if nsg == "nsg-web-subnet":
                    assert denies == {("10.0.0.4", "22"), ("10.0.0.4", "3389"), ("10.0.0.5", "22")}
                elif nsg == "nsg-web-nic":
                    assert denies == {("10.0.0.4", "22"), ("10.0.0.4", "3389")}
                else:
                    assert denies == {(private_ip["vm-app" if "app" in nsg else "vm-ops"], "22")}
            # Firewalls: one DNAT rule per open grant behind them, each on its own mapped port.
            fw = arm.resource(estate.classic_firewall_id)["properties"].get("natRuleCollections") or []
            dnat = {r["name"]: r for c in fw if plan.is_ours(c["name"]) for r in c["properties"]["rules"]}
            behind_classic = [g for g in open_grants if g.vm.name == "vm-app"]
            assert set(dnat) == {plan.nat_rule_name(g) for g in behind_classic}
            for grant in behind_classic:
                rule_body = dnat[plan.nat_rule_name(grant)]
                assert rule_body["sourceAddresses"] == list(grant.source_prefixes)
                assert rule_body["destinationPorts"] == [str(grant.mapped_port)]
                assert rule_body["destinationAddresses"] == [estate.classic_fw_public_ip]
                translated = (rule_body["translatedAddress"], str(rule_body["translatedPort"]))
                assert translated == ("10.1.0.4", str(grant.port))
            groups = self.deps.network(estate.subscription_id).firewall_policy_rule_collection_groups
            names = {g.as_dict()["name"] for g in groups.list(estate.resource_group, "fwpol")}
            assert (plan.RULE_COLLECTION_GROUP_NAME in names) == any(
                g.vm.name == "vm-ops" for g in open_grants
            )
            ports = [g.mapped_port for g in open_grants if g.mapped_port is not None]
            assert len(ports) == len(set(ports)) or len(
                {(g.connect_address, g.mapped_port) for g in open_grants if g.mapped_port}
            ) == len(ports)
            # Grant records tell the truth.
            for grant in grants:
                if grant.is_open_at(now):
                    assert grant.status is PortStatus.INITIATED, grant
                    assert all(s is TargetState.APPLIED for s in grant.targets.values()), grant.targets
                elif grant.targets:
                    assert grant.status is PortStatus.REVOKED, grant
                    assert all(s is TargetState.REMOVED for s in grant.targets.values()), grant.targets
                    if grant.end_time <= now and grant.status_reason is None:
                        raise AssertionError(f"closed without a reason: {grant}")

    return EnforcementMachine


_CLEAN_DROP = {"etag", "provisioningState", "id", "type"}


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in _CLEAN_DROP}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _run(arm_emulator: EmulatorClient, azurite: Any, examples: int, steps: int) -> None:
    def storage_env() -> dict[str, str]:
        return {
            "AzureWebJobsStorage": azurite.connection_string,
            "PORTCULLIS_TABLE_PREFIX": "s" + uuid.uuid4().hex[:12],
        }

    machine = build_machine(arm_emulator, storage_env)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=False,
            phases=[Phase.explicit, Phase.generate]
            if os.environ.get("PORTCULLIS_STATEFUL_NO_SHRINK")
            else list(Phase),
            verbosity=Verbosity.verbose
            if os.environ.get("PORTCULLIS_STATEFUL_VERBOSE")
            else Verbosity.normal,
        ),
    )


def test_enforcement_invariants_under_faults(arm_emulator: EmulatorClient, azurite: Any) -> None:
    _run(
        arm_emulator,
        azurite,
        examples=int(os.environ.get("PORTCULLIS_STATEFUL_FAST_EXAMPLES", "10")),
        steps=12,
    )


@pytest.mark.slow
@pytest.mark.skipif(not LONG_EXAMPLES, reason="long mode: set PORTCULLIS_STATEFUL_EXAMPLES (e.g. 500)")
def test_enforcement_invariants_long(arm_emulator: EmulatorClient, azurite: Any) -> None:
    _run(arm_emulator, azurite, examples=LONG_EXAMPLES, steps=30)
