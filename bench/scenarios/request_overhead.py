"""Scenario 1, request overhead: latency and throughput of Defender's `POST .../initiate` through the
Functions host (parse, Easy Auth principal, policy, Azure RBAC on the VM, Table writes, audit, two
converge messages), at concurrency 1, 8 and 32, with ARM's long-running operations taking no time.

Enforcement (the converge queue and the timers) is disabled on the host so the figures are the
request path alone; every request asks for a (VM, port) pair no other request used, so no request
supersedes another. The RBAC decision is cached per (principal, VM) for 60 s: the first request for
a VM reads role assignments from ARM, the other ports of that VM hit the cache; both are reported.
Then the same path is run in-process under cProfile, counting the storage requests per initiate.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import app
from bench.harness import StorageRequestCounter, app_settings, arm_counts, clear_arm_log, log, summary
from bench.profiling import profile
from localrig.estates.scale import POLICY_PORTS, ScaleEstate

PORTS_PER_VM = len(POLICY_PORTS)


def _plan(quick: bool) -> list[tuple[int, int]]:
    """(concurrency, requests) per level."""
    if quick:
        return [(1, 8), (8, 16), (32, 32)]
    return [(1, 16), (8, 48), (32, 96)]


def run(ctx: Any) -> dict[str, Any]:
    running = ctx.services
    levels = _plan(ctx.quick)
    profiled = 8 if ctx.quick else 12
    total = sum(n for _, n in levels) + profiled + 8  # + warm-up
    vm_count = -(-total // PORTS_PER_VM)
    estate = ScaleEstate(
        running.arm.subscription_id,
        f"rg-req-{uuid.uuid4().hex[:6]}",
        direct_vms=vm_count,
        ports=PORTS_PER_VM,
        ip_octet=41,
    )
    from localrig.estates.scale import seed

    seed(running.arm, estate.resources())
    admin, requester = app.new_person("admin@bench.example"), app.new_person("requester@bench.example")
    app.grant_roles(running, estate, admin, requester)
    prefix = "breq" + uuid.uuid4().hex[:8]
    settings = app_settings(running, prefix)
    owner = app.policy_of(estate)
    pairs = [(vm.vm_id, port) for vm in estate.vms() for port in POLICY_PORTS[:PORTS_PER_VM]]
    cursor = iter(pairs)
    results: dict[str, Any] = {"levels": []}
    with app.host(running, settings, "host-request-overhead", disabled=app.ENFORCEMENT_FUNCTIONS) as base_url:
        client = app.ApiClient(base_url)
        client.put_policies(estate, admin)
        for _ in range(8):  # warm-up: first calls build clients and caches in the worker
            vm_id, port = next(cursor)
            status, answer = client.initiate(estate, owner[vm_id.lower()], requester, vm_id, port)
            if status != 202:
                raise RuntimeError(f"warm-up initiate -> {status}: {answer}")
        for concurrency, count in levels:
            work = [next(cursor) for _ in range(count)]
            # ~0.3 s per initiate at concurrency 1, ~8 initiates/s beyond (the last full run)
            if not ctx.fits(count * (0.3 if concurrency == 1 else 0.15) + 5, f"concurrency {concurrency}"):
                continue
            clear_arm_log(running.arm)
            level = _level(client, estate, owner, requester, concurrency, work)
            level["arm"] = arm_counts(running.arm, user_agent_mark="portcullis/")
            results["levels"].append(level)
            log(
                f"request overhead: concurrency {concurrency}: p50 {level['latency_seconds']['p50']:.3f} s "
                f"p99 {level['latency_seconds']['p99']:.3f} s, {level['throughput_per_second']:.1f}/s"
            )
        results["in_process"] = _in_process(
            running, settings, estate, owner, requester, [next(cursor) for _ in range(profiled)]
        )
    spi = results["in_process"]["storage_requests_per_initiate"]
    results["storage_requests_per_initiate"] = spi
    results["note"] = (
        "Through devhost over HTTP (threaded server, one Python worker process, as one Functions instance). "
        "Enforcement functions disabled during the measurement; ARM answers from the local emulator. "
        "'RBAC miss' = the first request for a VM (one role-assignment list on ARM)."
    )
    return results


def _level(
    client: app.ApiClient,
    estate: ScaleEstate,
    owner: dict[str, str],
    requester: app.Person,
    concurrency: int,
    work: list[tuple[str, int]],
) -> dict[str, Any]:
    latencies: list[float] = []
    first_for_vm: list[float] = []
    warm: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    seen_vms: set[str] = set()

    def one(item: tuple[str, int]) -> None:
        vm_id, port = item
        with lock:
            first = vm_id not in seen_vms
            seen_vms.add(vm_id)
        started = time.perf_counter()
        status, answer = client.initiate(estate, owner[vm_id.lower()], requester, vm_id, port)
        elapsed = time.perf_counter() - started
        with lock:
            if status != 202:
                errors.append(f"{status}: {str(answer)[:200]}")
                return
            latencies.append(elapsed)
            (first_for_vm if first else warm).append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, work))
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": len(work),
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_seconds": round(wall, 3),
        "throughput_per_second": round(len(latencies) / wall, 2) if wall else 0.0,
        "latency_seconds": summary(latencies),
        "latency_first_request_for_vm_seconds": summary(first_for_vm),
        "latency_cached_rbac_seconds": summary(warm),
    }


def _in_process(
    running: Any,
    settings: dict[str, str],
    estate: ScaleEstate,
    owner: dict[str, str],
    requester: app.Person,
    work: list[tuple[str, int]],
) -> dict[str, Any]:
    """The same InitiateAccess the HTTP handler calls, in this process, under cProfile, counting
    the HTTP requests it sends to Azurite."""
    from datetime import UTC, datetime, timedelta

    from shared.actions.initiate import InitiateAccess, InitiateCommand
    from shared.model import Principal, PrincipalSource
    from shared.policy_store import policy_ref
    from shared.services import build_services
    from shared.settings import load_settings

    services = build_services(load_settings(settings))
    initiate = InitiateAccess(services)
    principal = Principal(requester.object_id, requester.name, PrincipalSource.EASY_AUTH)

    def command(vm_id: str, port: int) -> InitiateCommand:
        end = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "virtualMachines": [
                {
                    "id": vm_id,
                    "ports": [
                        {"number": port, "endTimeUtc": end, "allowedSourceAddressPrefix": "198.51.100.0/24"}
                    ],
                }
            ],
            "justification": "benchmark",
        }
        ref = policy_ref(estate.subscription_id, estate.resource_group, estate.location, owner[vm_id.lower()])
        return InitiateCommand(
            body=body, requester=principal, channel="http", policy=ref, caller_address="198.51.100.7"
        )

    initiate(command(*work[0]))  # builds the storage clients and tables outside the measurement
    counter = StorageRequestCounter(running.storage_ports())
    counter.install()
    clear_arm_log(running.arm)
    try:
        commands = [command(vm_id, port) for vm_id, port in work[1:]]
        started = time.perf_counter()
        _, profile_summary = profile(lambda: [initiate(c) for c in commands])
        seconds = time.perf_counter() - started
    finally:
        counter.uninstall()
    counts = counter.snapshot()
    n = len(work) - 1
    arm = arm_counts(running.arm, user_agent_mark="portcullis/")
    return {
        "initiates": n,
        "seconds_per_initiate_profiled": round(seconds / n, 4),
        "storage_requests": counts,
        "storage_requests_per_initiate": {k: round(v / n, 2) for k, v in sorted(counts.items())},
        "arm_requests_per_initiate": round((arm["reads"] + arm["writes"]) / n, 2),
        "profile": profile_summary,
    }
