"""The issue's estate (2,000 VMs, 2,010 NSGs, 10 firewalls of both kinds, 10,000 active grants), or a
fraction of it, standing as enforcement leaves it: seeded once per run and shared by the scenarios
that need it (the estate pass, and revocation while a pass runs).

Seeding is set-up, timed apart and never counted in a pass:
- ARM: every resource through the emulator's bulk `POST /_emulator/seed` (admin calls: neither logged
  as requests nor throttled), with our rules already in place: every NSG holds the Deny baseline of
  the policy VMs behind it and an Allow rule per open grant, every classic firewall our DNAT
  collection, every Firewall Policy our rule collection group. Those rules are what the app's pure
  planner (`shared/plan.py: plan_nsg`, `plan_firewall`) wants for the seeded grants and policies,
  written with the adapters' own wire format (`bench/enforcement.py`), so a pass over the fresh
  estate finds nothing to change: it is in sync by construction, not after a slow first converge.
- Tables: the policies as the PUT handler stores them; the grants as enforcement leaves them
  (Initiated, every target Applied, mapped ports assigned), with the store's own entity formats, in
  batch transactions (one partition, up to 100 rows each) sent in parallel; and the registry of
  targets holding rules of ours.
ARM and Table seeding run at the same time (the emulator and Azurite are separate processes).

The estate lives in a subscription of its own, so a pass that lists a whole subscription sees this
estate and nothing the other scenarios created; the ARM throttle's buckets are per subscription and
caller, so a pass over it spends the same budget as revocations in that subscription.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import Services, app_settings, log
from localrig.emulator_client import EmulatorClient
from localrig.estates.scale import POLICY_PORTS, FirewallGroup, ScaleEstate, VmInfo

FULL = {"vms": 2000, "firewalls": 10, "grants": 10000}
PORTS_PER_VM = 5  # 2,000 VMs x 5 ports = 10,000 grants
FIREWALL_SHARE = 0.1  # of the VMs sit behind one of the firewalls
SUBSCRIPTION = "00000000-0000-0000-0000-0000000000e5"
GRANT_HOURS = 3.0
TABLE_THREADS = 8
ARM_CHUNK = 500


@dataclass
class FullEstate:
    estate: ScaleEstate
    fraction: float
    settings: dict[str, str]  # the app's settings against it (its own table prefix and queues)
    arm: EmulatorClient  # admin and SDK calls in the estate's subscription
    nsg_ids: list[str]
    firewalls: int
    grants: int
    seeding: dict[str, Any] = field(default_factory=dict)

    def size(self) -> dict[str, Any]:
        return {
            "vms": self.estate.direct_vms + sum(g.vms for g in self.estate.firewalls),
            "nsgs": len(self.nsg_ids),
            "firewalls": self.firewalls,
            "firewalls_classic": sum(1 for g in self.estate.firewalls if g.kind == "classic"),
            "firewalls_policy": sum(1 for g in self.estate.firewalls if g.kind == "policy"),
            "grants": self.grants,
            "fraction_of_full": self.fraction,
        }


def shape(fraction: float, subscription_id: str, resource_group: str) -> ScaleEstate:
    """The estate at `fraction` of the issue's: VMs and grants scale, one firewall per 20 VMs behind
    firewalls up to 10 (alternately classic and Firewall Policy), every VM with its NIC NSG and every
    firewall's workload subnet with a subnet NSG."""
    vms = max(4, round(FULL["vms"] * fraction))
    behind = max(2, round(vms * FIREWALL_SHARE))
    count = min(FULL["firewalls"], max(2, behind // 20))
    per_firewall = behind // count
    groups = [
        FirewallGroup(f"f{i:02d}", "classic" if i % 2 == 0 else "policy", per_firewall) for i in range(count)
    ]
    return ScaleEstate(
        subscription_id,
        resource_group,
        direct_vms=vms - per_firewall * count,
        firewalls=groups,
        ports=PORTS_PER_VM,
        ip_octet=44,
    )


def ensure(running: Services, fraction: float) -> FullEstate:
    """The estate at `fraction`, seeded on first use in this run and shared afterwards."""
    key = f"full_estate:{fraction:g}"
    cached = running.extra.get(key)
    if cached is None:
        cached = seed_estate(running, fraction)
        running.extra[key] = cached
    return cached


def seed_estate(running: Services, fraction: float) -> FullEstate:
    from shared.settings import load_settings

    arm = EmulatorClient(running.emulator.base_url, running.emulator.ca_file, SUBSCRIPTION)
    estate = shape(fraction, SUBSCRIPTION, f"rg-estate-{uuid.uuid4().hex[:6]}")
    prefix = "best" + uuid.uuid4().hex[:8]
    settings_env = app_settings(running, prefix)
    settings = load_settings(settings_env)
    seeding: dict[str, Any] = {}
    total = time.perf_counter()

    clock = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    policies = _parsed_policies(estate)
    grants = _grants(estate, policies, now)
    resources = _resources_with_our_rules(estate, policies, grants, settings, now)
    batches = _table_batches(estate, grants)
    seeding["build_seconds"] = round(time.perf_counter() - clock, 2)
    seeding["arm_resources"] = len(resources)
    seeding["table_batches"] = sum(len(b) for b in batches.values())
    log(
        f"estate {fraction:g}: seeding {len(resources)} ARM resources and {len(grants)} grants "
        f"({seeding['table_batches']} Table batches)"
    )

    def seed_arm() -> float:
        started = time.perf_counter()
        for start in range(0, len(resources), ARM_CHUNK):
            arm.seed(resources[start : start + ARM_CHUNK])
        return time.perf_counter() - started

    def seed_tables() -> dict[str, Any]:
        return _write_tables(settings, estate, policies, batches)

    with ThreadPoolExecutor(max_workers=2) as pool:
        arm_future = pool.submit(seed_arm)
        table_future = pool.submit(seed_tables)
        seeding["arm_seconds"] = round(arm_future.result(), 2)
        seeding.update(table_future.result())
    seeding["total_seconds"] = round(time.perf_counter() - total, 2)
    log(f"estate {fraction:g}: seeded in {seeding['total_seconds']:.1f} s ({seeding})")
    return FullEstate(
        estate=estate,
        fraction=fraction,
        settings=settings_env,
        arm=arm,
        nsg_ids=estate.nsg_ids(),
        firewalls=len(estate.firewalls),
        grants=len(grants),
        seeding=seeding,
    )


# ---- what the app stores and plans ----


@dataclass(frozen=True)
class _SeedGrant:
    grant: Any  # shared.model.Grant
    vm: VmInfo
    target_keys: tuple[str, ...]


def _parsed_policies(estate: ScaleEstate) -> dict[str, tuple[Any, dict[str, Any]]]:
    """{policy name: (JitPolicy, canonical body)} as the PUT handler parses and stores them."""
    from shared.defender import parse_policy_body
    from shared.model import PolicyRef

    parsed = {}
    for name, body in estate.policy_bodies().items():
        ref = PolicyRef(estate.subscription_id, estate.resource_group, estate.location, name)
        parsed[name] = parse_policy_body(body, ref)
    return parsed


def _firewall_target(estate: ScaleEstate, vm: VmInfo) -> Any:
    from shared.model import ResourceId, TargetKind, TargetRef

    assert vm.firewall is not None
    if vm.firewall.kind == "policy":
        return TargetRef(TargetKind.FIREWALL_POLICY, ResourceId(estate.firewall_policy_id(vm.firewall)))
    assert vm.firewall_id is not None
    return TargetRef(TargetKind.FIREWALL_CLASSIC, ResourceId(vm.firewall_id))


def _nsg_targets(vm: VmInfo) -> list[Any]:
    from shared.model import ResourceId, TargetKind, TargetRef

    return [TargetRef(TargetKind.NSG, ResourceId(n)) for n in (vm.subnet_nsg_id, vm.nic_nsg_id) if n]


def _grants(
    estate: ScaleEstate, policies: dict[str, tuple[Any, dict[str, Any]]], now: datetime
) -> list[_SeedGrant]:
    """PORTS_PER_VM open grants per VM, one request per 10 VMs, as enforcement leaves them: Initiated,
    every target Applied, DNAT ports mapped from the bottom of the range per firewall."""
    from shared import grants as g
    from shared.model import (
        Grant,
        PortStatus,
        Principal,
        PrincipalSource,
        TargetState,
        TransportProtocol,
        VmRef,
    )

    owner = {entry.vm.key: policy.ref for policy, _ in policies.values() for entry in policy.virtual_machines}
    principal = Principal(str(uuid.uuid4()), "requester@bench.example", PrincipalSource.EASY_AUTH)
    end = now + timedelta(hours=GRANT_HOURS)
    mapped: dict[str, int] = defaultdict(lambda: 50000)
    result: list[_SeedGrant] = []
    vms = list(estate.vms())
    for start in range(0, len(vms), 10):
        request_id = g.new_request_id()
        index = 0
        for vm in vms[start : start + 10]:
            vm_ref = VmRef.parse(vm.vm_id)
            targets = _nsg_targets(vm)
            connect = None
            if vm.firewall is not None:
                targets.append(_firewall_target(estate, vm))
                connect = vm.firewall_public_ip
            for port in POLICY_PORTS[:PORTS_PER_VM]:
                port_mapped = None
                if vm.firewall is not None:
                    port_mapped = mapped[vm.firewall.name]
                    mapped[vm.firewall.name] += 1
                grant = Grant(
                    grant_id=g.grant_id(request_id, index),
                    request_id=request_id,
                    policy=owner[vm_ref.key],
                    vm=vm_ref,
                    port=port,
                    protocol=TransportProtocol.TCP,
                    source_prefixes=("198.51.100.0/24",),
                    start_time=now,
                    end_time=end,
                    requester=principal,
                    justification="benchmark",
                    ticket_id=None,
                    status=PortStatus.INITIATED,
                    targets={t.key: TargetState.APPLIED for t in targets},
                    mapped_port=port_mapped,
                    connect_address=connect,
                )
                index += 1
                result.append(_SeedGrant(grant, vm, tuple(t.key for t in targets)))
    return result


def _resources_with_our_rules(
    estate: ScaleEstate,
    policies: dict[str, tuple[Any, dict[str, Any]]],
    grants: list[_SeedGrant],
    settings: Any,
    now: datetime,
) -> list[dict[str, Any]]:
    """The estate's seed items with the rules the planner wants already on every target."""
    from bench import enforcement
    from shared.plan import (
        COLLECTION_NAME,
        POLICY_NAT_COLLECTION_NAME,
        RULE_COLLECTION_GROUP_NAME,
        BaselineEntry,
        GrantOnFirewall,
        GrantOnNsg,
        NicOnTarget,
        PriorityBands,
        plan_firewall,
        plan_nsg,
    )

    vm_info = {vm.vm_id.lower(): (index, vm) for index, vm in enumerate(estate.vms())}
    group_index = {group.name: i for i, group in enumerate(estate.firewalls)}
    baseline: dict[str, list[Any]] = defaultdict(list)
    for policy, _ in policies.values():
        for entry in policy.virtual_machines:
            _, vm = vm_info[entry.vm.id.lower()]
            for nsg in (vm.subnet_nsg_id, vm.nic_nsg_id):
                if nsg:
                    baseline[nsg].append(BaselineEntry(NicOnTarget(entry.vm, (vm.private_ip,)), entry.ports))
    on_nsg: dict[str, list[Any]] = defaultdict(list)
    on_firewall: dict[str, list[Any]] = defaultdict(list)
    for seeded in grants:
        vm = seeded.vm
        nic = NicOnTarget(seeded.grant.vm, (vm.private_ip,))
        subnet = (
            estate.firewall_subnet_prefix(group_index[vm.firewall.name]) if vm.firewall is not None else None
        )
        for nsg in (vm.subnet_nsg_id, vm.nic_nsg_id):
            if nsg:
                on_nsg[nsg].append(GrantOnNsg(seeded.grant, nic, subnet))
        if vm.firewall is not None:
            assert vm.firewall_public_ip is not None
            on_firewall[vm.firewall.name].append(
                GrantOnFirewall(seeded.grant, vm.private_ip, vm.firewall_public_ip)
            )

    s = settings
    bands = PriorityBands(
        s.nsg_allow_priorities.first,
        s.nsg_allow_priorities.last,
        s.nsg_deny_priorities.first,
        s.nsg_deny_priorities.last,
    )
    nsg_rules: dict[str, list[dict[str, Any]]] = {}
    for nsg in estate.nsg_ids():
        plan = plan_nsg([], baseline.get(nsg, []), on_nsg.get(nsg, []), bands, now)
        nsg_rules[nsg.lower()] = [enforcement.rule_to_wire(rule) for rule in plan.desired]

    items = estate.resources()
    extra: list[dict[str, Any]] = []
    firewall_by_id = {estate.firewall_id(g).lower(): g for g in estate.firewalls}
    for item in items:
        item_id = item["id"].lower()
        # A copy, so the rules of ours written here never reach a body the estate may hand out again.
        props = item["body"]["properties"] = dict(item["body"].get("properties") or {})
        if item_id in nsg_rules:
            props["securityRules"] = nsg_rules[item_id]
            continue
        group = firewall_by_id.get(item_id)
        if group is None:
            continue
        if group.kind == "classic":
            priority = s.firewall_nat_collection_priority
        else:
            priority = s.firewall_policy_rule_collection_group_priority
        fw_plan = plan_firewall(None, None, on_firewall.get(group.name, []), priority, now)
        if not fw_plan.desired:
            continue
        if group.kind == "classic":
            props["natRuleCollections"] = [
                {
                    "name": COLLECTION_NAME,
                    "properties": {
                        "priority": fw_plan.priority,
                        "action": {"type": "Dnat"},
                        "rules": [
                            enforcement.nat_rule_wire(rule, enforcement.CLASSIC_PROTOCOLS)
                            for rule in fw_plan.desired
                        ],
                    },
                }
            ]
        else:
            extra.append(
                {
                    "id": f"{estate.firewall_policy_id(group)}/ruleCollectionGroups/"
                    + RULE_COLLECTION_GROUP_NAME,
                    "body": {
                        "properties": {
                            "priority": fw_plan.priority,
                            "ruleCollections": [
                                {
                                    "ruleCollectionType": enforcement.POLICY_NAT_COLLECTION_TYPE,
                                    "name": POLICY_NAT_COLLECTION_NAME,
                                    "priority": 100,
                                    "action": {"type": "DNAT"},
                                    "rules": [
                                        {
                                            "ruleType": "NatRule",
                                            **enforcement.nat_rule_wire(r, enforcement.POLICY_PROTOCOLS),
                                        }
                                        for r in fw_plan.desired
                                    ],
                                }
                            ],
                        }
                    },
                }
            )
    return items + extra


def _table_batches(estate: ScaleEstate, grants: list[_SeedGrant]) -> dict[str, list[list[dict[str, Any]]]]:
    """{table name: [batch of up to 100 entities of one partition]} with the store's entity formats."""
    from shared import grants as g
    from shared.grants import RequestRecord
    from shared.table_keys import hashed_key

    partitions: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    seen_requests: set[str] = set()
    for seeded in grants:
        grant = seeded.grant
        if grant.request_id not in seen_requests:
            seen_requests.add(grant.request_id)
            record = RequestRecord(
                grant.request_id,
                grant.policy,
                grant.requester,
                grant.start_time,
                "benchmark",
                None,
                uuid.uuid4().hex,
            )
            partitions[("grants", grant.request_id)].append(g._request_entity(record))
        partitions[("grants", grant.request_id)].append(g._grant_entity(grant))
        partitions[("grantsbyvm", hashed_key(grant.vm.key))].append(g._vm_index_entity(grant))
        partitions[("grantexpiry", "expiry")].append(g._expiry_entity(grant))
        for key in seeded.target_keys:
            partitions[("grantsbytarget", hashed_key(key))].append(
                g._target_index_entity(grant, key, settled=False)
            )
    registry = _registry_rows({key for seeded in grants for key in seeded.target_keys})
    if registry:
        partitions[("leases", registry[0]["PartitionKey"])].extend(registry)
    batches: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for (name, _), entities in partitions.items():
        for start in range(0, len(entities), 100):
            batches[name].append(entities[start : start + 100])
    return batches


def _registry_rows(target_keys: set[str]) -> list[dict[str, Any]]:
    """The registry of targets holding rules of ours, as `TargetRegistry.note` writes it; none if the
    enforcement code keeps no such registry."""
    try:
        from shared.lease import TARGET_PARTITION, TableLeases
    except ImportError:
        return []
    return [
        {"PartitionKey": TARGET_PARTITION, "RowKey": TableLeases._row(key), "target": key}
        for key in sorted(target_keys)
    ]


def _write_tables(
    settings: Any,
    estate: ScaleEstate,
    policies: dict[str, tuple[Any, dict[str, Any]]],
    batches: dict[str, list[list[dict[str, Any]]]],
) -> dict[str, Any]:
    from shared.policy_store import TablePolicyStore
    from shared.storage import table

    started = time.perf_counter()
    store = TablePolicyStore(settings)
    for policy, canonical in policies.values():
        store.put(policy.ref, canonical)
    clients = {name: table(name, settings) for name in batches}
    work = [(name, batch) for name, items in batches.items() for batch in items]

    def submit(item: tuple[str, list[dict[str, Any]]]) -> None:
        name, entities = item
        clients[name].submit_transaction([("upsert", e) for e in entities])

    _parallel(submit, work, TABLE_THREADS)
    return {"table_seconds": round(time.perf_counter() - started, 2), "policies": len(policies)}


def _parallel(function: Callable[[Any], None], items: list[Any], threads: int) -> None:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(function, items):
            pass


# ---- drift ----


def drift(full: FullEstate, share: float) -> list[str]:
    """Someone edits NSGs behind the app's back: one Allow rule of ours disappears from `share` of
    the NSGs (spread evenly over the estate). Admin writes: not logged, not throttled. Returns the
    NSGs that lost a rule (what a pass must write, and nothing else)."""
    from shared.plan import is_ours

    nsgs = full.nsg_ids
    count = max(1, round(len(nsgs) * share))
    chosen = [nsgs[i * len(nsgs) // count] for i in range(count)]
    drifted = []
    for nsg_id in chosen:
        body = full.arm.resource(nsg_id)
        rules = body.get("properties", {}).get("securityRules") or []
        ours = [
            r
            for r in rules
            if is_ours(str(r.get("name", ""))) and (r.get("properties") or {}).get("access") == "Allow"
        ]
        if not ours:
            continue
        kept = [r for r in rules if r is not ours[0]]
        full.arm.put_resource(nsg_id, {"location": body["location"], "properties": {"securityRules": kept}})
        drifted.append(nsg_id)
    return drifted
