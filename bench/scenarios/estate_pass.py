"""Scenario 4, one full timer pass over a large estate: `reconcile_all` (the reconcile timer's body)
converging every managed target, once when nothing drifted (target: zero ARM writes) and once after
1 % of the NSGs lost one of our rules behind the app's back. Measured per pass: wall time, peak RSS
growth, ARM reads and writes (emulator log), Table reads and writes (requests to Azurite).

Runs in a child process (`python -m bench.scenarios.estate_pass CONFIG`) so its memory is its own.
Set-up, not measured: the estate is bulk-seeded into the emulator; policies are stored as the PUT
handler stores them; grants are written as they stand after enforcement applied them (Initiated,
targets Applied, mapped ports assigned) in Table batch transactions; a first pass (audit off) writes
their rules to ARM. The pass runs converge inline for every target (in Azure the timer enqueues one
message per target and the queue trigger does the same work).

The issue's estate is 2,000 VMs, 2,000 NSGs, 10 firewalls, 10,000 grants. The default run measures a
fraction of it and extrapolates (see `_extrapolate`); `--full` measures the whole estate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import BudgetSpent, log

FULL = {"vms": 2000, "firewalls": 10, "grants": 10000}
PORTS_PER_VM = 5
FIREWALL_SHARE = 0.1  # of the VMs sit behind one of the firewalls
DRIFT_SHARE = 0.01
# Per-target work that walks every policy (re-read and re-parsed per target) and every policy VM (the
# Deny baseline's path lookups): its cost grows with targets x VMs (docs/performance.md, items 1-2).
# (attribute of shared.converge, function) with None = the module itself; missing ones are skipped,
# so once that code changes the extrapolation simply sees less quadratic work.
QUADRATIC = ((None, "_policies"), ("_Paths", "for_entry"))


class _QuadraticTimer:
    """Wall time spent inside the QUADRATIC functions during a pass (timing wrappers; the functions
    run unchanged). Nested calls are timed once."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.seconds = 0.0
        self._depth = 0
        self._saved: list[tuple[Any, str, Any]] = []

    def _wrap(self, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - started

        return timed

    def __enter__(self) -> _QuadraticTimer:
        for owner_name, function_name in QUADRATIC:
            owner = self._module if owner_name is None else getattr(self._module, owner_name, None)
            function = getattr(owner, function_name, None) if owner is not None else None
            if function is None:
                continue
            self._saved.append((owner, function_name, function))
            setattr(owner, function_name, self._wrap(function))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, function_name, function in reversed(self._saved):
            setattr(owner, function_name, function)
        self._saved.clear()


def _estimated_seconds(scale: float) -> float:
    """Seeding plus set-up pass plus two measured passes on 2 busy cores (about 1,000 s per unit of
    scale plus 5 s in the last runs), to skip a scale the time budget cannot hold."""
    return 1200.0 * scale + 8.0


def run(ctx: Any) -> dict[str, Any]:
    running = ctx.services
    if ctx.quick:
        scales = [0.005]
    elif ctx.full:
        scales = [1.0]
    else:
        scales = [0.01, 0.03]
    measured = []
    for scale in scales:
        if not ctx.fits(_estimated_seconds(scale), f"estate pass at scale {scale:g}"):
            break
        env = {
            "AzureWebJobsStorage": running.azurite.connection_string,
            "PORTCULLIS_ARM_ENDPOINT": running.emulator.base_url,
            "PORTCULLIS_ARM_CA_BUNDLE": str(running.emulator.ca_file),
            "PORTCULLIS_ARM_CREDENTIAL": "static-token",
            "PORTCULLIS_ARM_POLLING_INTERVAL": "0",
            "PORTCULLIS_TABLE_PREFIX": "best" + uuid.uuid4().hex[:8],
        }
        config = {
            "scale": scale,
            "profile": scale == scales[0],
            "env": env,
            "emulator": {"base_url": running.emulator.base_url, "ca_file": str(running.emulator.ca_file)},
            "storage_ports": {str(k): v for k, v in running.storage_ports().items()},
        }
        try:
            completed = subprocess.run(
                [sys.executable, "-m", "bench.scenarios.estate_pass", json.dumps(config)],
                capture_output=True,
                text=True,
                timeout=min(4 * 3600 if ctx.full else 900, max(ctx.remaining() - 5.0, 1.0)),
                env={**os.environ, **env},
            )
        except subprocess.TimeoutExpired:
            ctx.cut_short.append(f"estate pass at scale {scale:g} stopped by the time budget")
            break
        sys.stderr.write(completed.stderr[-4000:] if completed.returncode else "")
        if completed.returncode != 0:
            raise RuntimeError(f"estate worker failed ({completed.returncode}): {completed.stderr[-1500:]}")
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        measured.append(result)
        for p in result["passes"]:
            log(
                f"estate scale {scale}: {p['name']}: {p['seconds']:.1f} s, "
                f"ARM r/w {p['arm']['reads']}/{p['arm']['writes']}, "
                f"Table r/w {p['storage'].get('table_reads', 0)}/{p['storage'].get('table_writes', 0)}"
            )
    if not measured:
        raise BudgetSpent
    largest = measured[-1]
    answer: dict[str, Any] = {
        "scale": largest["scale"],
        "passes": largest["passes"],
        "setup": largest["setup"],
        "measured_scales": [{"scale": m["scale"], "passes": m["passes"]} for m in measured],
    }
    if largest["scale"]["fraction_of_target"] < 1.0:
        answer["extrapolated"] = _extrapolate(measured)
    answer["note"] = (
        "One pass = reconcile_all: every policy VM's path is re-read (topology cache cleared), then every "
        "managed target converged inline. "
        "Peak RSS is the bench worker process (Python, SDK clients, caches). "
        + (
            "Full-estate figures are extrapolated from the measured scales (see method)."
            if "extrapolated" in answer
            else ""
        )
    )
    return answer


def _extrapolate(measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pass, the full estate's wall time and request counts.

    Wall time: each pass's time inside the QUADRATIC functions (timed during the pass) grows with
    targets x policy VMs, so as N² (N = fraction of the full estate); the rest grows as N. The model
    is taken from the largest scale and checked against the others (`check` in `method`). Request
    counts grow linearly with VMs, NSGs and grants by construction: linear from the largest scale."""
    if not measured:
        raise BudgetSpent
    largest = measured[-1]
    x_big = largest["scale"]["fraction_of_target"]

    def split(m: dict[str, Any]) -> tuple[float, float]:
        """(linear part, quadratic part) of the mean pass at this scale, in seconds."""
        passes = m["passes"]
        total = float(sum(p["seconds"] for p in passes)) / len(passes)
        quadratic = float(sum(p.get("quadratic_seconds", 0.0) for p in passes)) / len(passes)
        return total - quadratic, quadratic

    linear_part, quadratic_part = split(largest)
    linear, quadratic = linear_part / x_big, quadratic_part / x_big**2
    mean = linear_part + quadratic_part
    method = (
        f"{quadratic_part / mean if mean else 0:.1%} of the pass at scale {x_big:g} is per-target work "
        f"over every policy VM, grown as N², the rest as N ({linear:.0f} s + {quadratic:.0f} s at N = 1)"
    )
    checks = []
    for m in measured[:-1]:
        x = m["scale"]["fraction_of_target"]
        predicted = linear * x + quadratic * x**2
        checks.append(f"scale {x:g}: model {predicted:.1f} s, measured {sum(split(m)):.1f} s")
    if checks:
        method += "; check " + ", ".join(checks)
    rows = []
    for p in largest["passes"]:
        share_of_mean = p["seconds"] / mean if mean else 1.0
        rows.append(
            {
                "name": p["name"],
                "seconds": round((linear + quadratic) * share_of_mean, 1),
                "arm_reads": round(p["arm"]["reads"] / x_big),
                "arm_writes": round(p["arm"]["writes"] / x_big),
                "table_reads": round(p["storage"].get("table_reads", 0) / x_big),
                "table_writes": round(p["storage"].get("table_writes", 0) / x_big),
                "method": method,
            }
        )
    return rows


# ---------------------------------------------------------------- the worker (child process) ----


def _worker(config: dict[str, Any]) -> dict[str, Any]:
    from azure.data.tables import TableTransactionError  # noqa: F401 - fail early if missing

    from bench.estate import BenchEstate, FirewallGroup, seed
    from bench.harness import PeakRss, StorageRequestCounter, arm_counts, clear_arm_log
    from localstack.emulator_client import EmulatorClient
    from shared import enforcement as converge
    from shared.settings import load_settings

    scale = float(config["scale"])
    vms = max(4, round(FULL["vms"] * scale))
    # At least one VM per firewall; below 5 % of the estate fewer firewalls, so that every measured
    # scale has the same shape (targets per VM), which the extrapolation relies on.
    behind = max(2, round(vms * FIREWALL_SHARE))
    firewall_count = min(FULL["firewalls"], behind)
    per_firewall = behind // firewall_count
    groups = [
        FirewallGroup(f"f{i:02d}", "classic" if i % 2 == 0 else "policy", per_firewall)
        for i in range(firewall_count)
    ]
    arm = EmulatorClient(
        config["emulator"]["base_url"], __import__("pathlib").Path(config["emulator"]["ca_file"])
    )
    estate = BenchEstate(
        arm.subscription_id,
        f"rg-estate-{uuid.uuid4().hex[:6]}",
        direct_vms=vms - per_firewall * firewall_count,
        firewalls=groups,
        ports=PORTS_PER_VM,
        ip_octet=44,
    )
    settings = load_settings(config["env"])
    setup: dict[str, float] = {}

    clock = time.perf_counter()
    seed(arm, estate.resources())
    setup["seed_arm_seconds"] = round(time.perf_counter() - clock, 1)

    clock = time.perf_counter()
    _store_policies(settings, estate)
    grants_written = _write_grants(settings, estate)
    setup["write_grants_seconds"] = round(time.perf_counter() - clock, 1)

    counter = StorageRequestCounter({int(k): v for k, v in config["storage_ports"].items()})
    counter.install()
    deps = converge.build_deps(settings, now=lambda: datetime.now(UTC), sleep=time.sleep, audit=_NoAudit())
    clock = time.perf_counter()
    # Rules to ARM: the state "after enforcement" the measured passes start from. Set-up only, so
    # targets are converged on 6 threads (as several queue workers would) to save time.
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda target: converge.converge(deps, target), converge.managed_targets(deps)))
    setup["first_pass_seconds"] = round(time.perf_counter() - clock, 1)

    measured = converge.build_deps(settings, now=lambda: datetime.now(UTC), sleep=time.sleep)
    passes = []
    nsgs = estate.nsg_ids()
    for name in ("no drift", "1 % of NSGs drifted"):
        if name != "no drift":
            _drift(arm, nsgs, DRIFT_SHARE)
        clear_arm_log(arm)
        counter.reset()
        quadratic = _QuadraticTimer(converge)
        with PeakRss() as memory, quadratic:
            clock = time.perf_counter()
            targets = converge.reconcile_all(measured)
            seconds = time.perf_counter() - clock
        passes.append(
            {
                "name": name,
                "seconds": round(seconds, 2),
                "quadratic_seconds": round(quadratic.seconds, 3),
                "targets": len(targets),
                "arm": arm_counts(arm, user_agent_mark="portcullis/"),
                "storage": counter.snapshot(),
                **memory.as_dict(),
            }
        )
    if config.get("profile"):
        from bench.profiling import profile

        clear_arm_log(arm)
        _, summary = profile(lambda: converge.reconcile_all(measured), top=25)
        passes[0]["profile"] = summary
    counter.uninstall()
    return {
        "scale": {
            "vms": vms,
            "nsgs": len(nsgs),
            "firewalls": firewall_count,
            "grants": grants_written,
            "fraction_of_target": grants_written / FULL["grants"],
        },
        "setup": setup,
        "passes": passes,
    }


class _NoAudit:
    """Set-up only: the first pass re-applies every seeded grant's rules; its audit is not measured."""

    def record(self, event: str, *, subject: str, actor: str, **details: object) -> None:
        return None


def _store_policies(settings: Any, estate: Any) -> None:
    from shared.defender import parse_policy_body
    from shared.model import PolicyRef
    from shared.policy_store import TablePolicyStore

    store = TablePolicyStore(settings)
    for name, body in estate.policy_bodies().items():
        ref = PolicyRef(estate.subscription_id, estate.resource_group, estate.location, name)
        _, canonical = parse_policy_body(body, ref)
        store.put(ref, canonical)


def _write_grants(settings: Any, estate: Any) -> int:
    """Every VM gets PORTS_PER_VM active grants, stored as enforcement leaves them (Initiated, every
    target Applied), with the store's own entity formats, in batch transactions per partition."""
    from bench.app import policy_of
    from bench.estate import POLICY_PORTS
    from shared import grants as g
    from shared.model import (
        Grant,
        PolicyRef,
        PortStatus,
        Principal,
        PrincipalSource,
        ResourceId,
        TargetKind,
        TargetRef,
        TargetState,
        TransportProtocol,
        VmRef,
    )
    from shared.storage import table
    from shared.table_keys import hashed_key

    owner = policy_of(estate)
    now = datetime.now(UTC).replace(microsecond=0)
    end = now + timedelta(hours=3)
    principal = Principal(str(uuid.uuid4()), "requester@bench.example", PrincipalSource.EASY_AUTH)
    batches: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    mapped: dict[str, int] = defaultdict(lambda: 50000)
    count = 0
    vms = list(estate.vms())
    for start in range(0, len(vms), 10):
        chunk = vms[start : start + 10]
        request_id = g.new_request_id()
        policy = PolicyRef(
            estate.subscription_id, estate.resource_group, estate.location, owner[chunk[0].vm_id.lower()]
        )
        record = g.RequestRecord(request_id, policy, principal, now, "benchmark", None, uuid.uuid4().hex)
        batches[("grants", request_id)].append(g._request_entity(record))
        index = 0
        for vm in chunk:
            vm_policy = PolicyRef(
                estate.subscription_id, estate.resource_group, estate.location, owner[vm.vm_id.lower()]
            )
            targets = [
                TargetRef(TargetKind.NSG, ResourceId(n)) for n in (vm.subnet_nsg_id, vm.nic_nsg_id) if n
            ]
            connect = None
            if vm.firewall is not None:
                fw_id = (
                    estate.firewall_policy_id(vm.firewall) if vm.firewall.kind == "policy" else vm.firewall_id
                )
                kind = (
                    TargetKind.FIREWALL_POLICY
                    if vm.firewall.kind == "policy"
                    else TargetKind.FIREWALL_CLASSIC
                )
                targets.append(TargetRef(kind, ResourceId(fw_id)))
                connect = vm.firewall_public_ip
            for port in POLICY_PORTS[:PORTS_PER_VM]:
                port_mapped = None
                if vm.firewall is not None:
                    port_mapped = mapped[vm.firewall.name]
                    mapped[vm.firewall.name] += 1
                grant = Grant(
                    grant_id=g.grant_id(request_id, index),
                    request_id=request_id,
                    policy=vm_policy,
                    vm=VmRef.parse(vm.vm_id),
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
                count += 1
                batches[("grants", request_id)].append(g._grant_entity(grant))
                batches[("grantsbyvm", hashed_key(grant.vm.key))].append(g._vm_index_entity(grant))
                batches[("grantexpiry", "expiry")].append(g._expiry_entity(grant))
                for target in targets:
                    batches[("grantsbytarget", hashed_key(target.key))].append(
                        g._target_index_entity(grant, target.key, settled=False)
                    )
    clients = {
        name: table(name, settings) for name in ("grants", "grantsbyvm", "grantexpiry", "grantsbytarget")
    }
    work = []
    for (name, _), entities in batches.items():
        for start in range(0, len(entities), 100):
            work.append((name, entities[start : start + 100]))

    def submit(item: tuple[str, list[dict[str, Any]]]) -> None:
        name, entities = item
        clients[name].submit_transaction([("upsert", e) for e in entities])

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(submit, work))
    return count


def _drift(arm: Any, nsg_ids: list[str], share: float) -> None:
    """Someone edits NSGs behind our back: the first rule of ours disappears from `share` of them."""
    step = max(1, round(1 / share))
    for nsg_id in nsg_ids[::step]:
        body = arm.resource(nsg_id)
        rules = body.get("properties", {}).get("securityRules") or []
        ours = [
            r
            for r in rules
            if r["name"].lower().startswith("portcullis-jit-") and r["properties"].get("access") == "Allow"
        ]
        if not ours:
            continue
        kept = [r for r in rules if r is not ours[0]]
        arm.put_resource(nsg_id, {"location": body["location"], "properties": {"securityRules": kept}})


def main() -> int:
    config = json.loads(sys.argv[1])
    result = _worker(config)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
