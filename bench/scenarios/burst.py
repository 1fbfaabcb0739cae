"""Scenario 2, a burst behind one firewall: N users ask for access to N VMs behind one Azure Firewall
(classic rules), then behind one Firewall Policy, while every firewall update takes D seconds in
the emulator. Measured: firewall writes, time from the first initiate until the last grant is
usable (its DNAT rule and NSG rule in place and the write's operation finished), as a multiple of
D; then the naive strategy (bench/naive.py: Defender's one read-modify-write per grant, in
sequence) for the same N on a twin firewall, in the same run.

Requests arrive as fast as 8 concurrent clients can send them; the converge queue and its batching
run as deployed (devhost queue trigger); the timers are disabled so that only the grants' own
messages drive enforcement.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from bench import app
from bench.harness import app_settings, arm_counts, clear_arm_log, log
from bench.naive import NaiveJit, NaiveStoppedError
from localrig.estates.scale import FirewallGroup, ScaleEstate, VmInfo, seed

CLIENTS = 8
APP_STATUS_SAMPLE = 20
FIREWALL_TYPES = {
    "classic": "Microsoft.Network/azureFirewalls",
    "policy": "Microsoft.Network/firewallPolicies/ruleCollectionGroups",
}
GROUP_NAME = "Portcullis-JIT"  # shared.plan.RULE_COLLECTION_GROUP_NAME


def _plan(ctx: Any) -> tuple[float, dict[str, list[int]], dict[str, list[int]]]:
    """(D seconds, burst sizes per firewall kind, sizes the naive strategy is measured at per kind;
    its other sizes are extrapolated from its per-grant cost). The default run measures 200 grants
    behind the classic firewall only and the naive strategy at fewer sizes, to fit `make bench`'s
    time budget (the Firewall Policy path batches the same way); --full measures everything."""
    if ctx.quick:
        return 1.0, {"classic": [3], "policy": [3]}, {"classic": [3], "policy": [3]}
    if ctx.full:
        every = {"classic": [10, 50, 200], "policy": [10, 50, 200]}
        return 1.0, every, every
    return 1.0, {"classic": [10, 50, 200], "policy": [10, 50]}, {"classic": [10, 50], "policy": [10]}


def _estimated_seconds(n: int) -> float:
    """A Portcullis burst's wall time on 2 busy cores (intake ~0.3 s per grant, then about 3 D) plus
    its waits, to skip sizes the time budget cannot hold."""
    return 0.45 * n + 12.0


def run(ctx: Any) -> dict[str, Any]:
    running = ctx.services
    d_seconds, sizes, naive_sizes = _plan(ctx)
    groups = [
        FirewallGroup(f"{who}{kind[0]}{n}", kind, n)
        for who, plan in (("p", sizes), ("n", naive_sizes))
        for kind in ("classic", "policy")
        for n in plan[kind]
    ]
    estate = ScaleEstate(
        running.arm.subscription_id,
        f"rg-burst-{uuid.uuid4().hex[:6]}",
        firewalls=groups,
        nic_nsgs=False,
        ip_octet=42,
    )
    seed(running.arm, estate.resources())
    admin, requester = app.new_person("admin@bench.example"), app.new_person("requester@bench.example")
    app.grant_roles(running, estate, admin, requester)
    prefix = "bbur" + uuid.uuid4().hex[:8]
    settings = app_settings(running, prefix)
    # Only Portcullis's VMs are in JIT policies: the naive strategy's twins are Defender's business.
    ours = _is_portcullis_vm
    owner = app.policy_of(estate, ours)
    by_group: dict[str, list[VmInfo]] = {}
    for vm in estate.vms():
        assert vm.firewall is not None
        by_group.setdefault(vm.firewall.name, []).append(vm)
    durations = dict.fromkeys(FIREWALL_TYPES.values(), d_seconds)
    durations["Microsoft.Network/firewallPolicies"] = d_seconds
    runs: list[dict[str, Any]] = []
    with app.host(
        running, settings, "host-burst", disabled=("jit_expiry_sweep", "jit_reconcile")
    ) as base_url:
        client = app.ApiClient(base_url)
        client.put_policies(estate, admin, ours)
        with running.arm.lro_seconds(durations):
            _wait_quiet(running)
            naive_network = _network_client(settings, estate)
            # The naive strategy runs in the background on twin firewalls, one size after another,
            # while Portcullis's runs go on: both see the same machine load (the naive strategy mostly
            # waits for its operations), and the scenario fits its time budget.
            naive_plan = [(kind, n) for kind in ("classic", "policy") for n in naive_sizes[kind]]
            stop_naive = threading.Event()
            background = ThreadPoolExecutor(max_workers=1)
            try:
                naive_results = {
                    (kind, n): background.submit(
                        _naive, naive_network, estate, by_group[f"n{kind[0]}{n}"], d_seconds, stop_naive
                    )
                    for kind, n in naive_plan
                }
                for kind in ("classic", "policy"):
                    for n in sizes[kind]:
                        if not ctx.fits(_estimated_seconds(n), f"Portcullis {kind} burst of {n}"):
                            continue
                        group = next(g for g in groups if g.name == f"p{kind[0]}{n}")
                        result = _portcullis(
                            running, client, estate, owner, requester, group, by_group[group.name], d_seconds
                        )
                        runs.append({"kind": kind, "grants": n, "portcullis": result})
                        log(
                            f"burst {kind} n={n}: Portcullis {result['firewall_writes']} firewall writes, "
                            f"last usable after {result['seconds_to_last_usable']:.1f} s "
                            f"({result['multiple_of_d']:.1f} D)"
                        )
                        _wait_quiet(running)
                for (kind, n), future in naive_results.items():
                    row = next((r for r in runs if r["kind"] == kind and r["grants"] == n), None)
                    try:
                        outcome = future.result(timeout=max(ctx.remaining() - 10.0, 1.0))
                    except (FutureTimeout, NaiveStoppedError):
                        ctx.cut_short.append(f"naive {kind} burst of {n} not finished within the time budget")
                        stop_naive.set()
                        continue
                    if row is not None:
                        row["naive"] = outcome
                        log(f"burst {kind} n={n}: naive {n} firewall writes, {outcome['seconds']:.1f} s")
            finally:
                stop_naive.set()
                background.shutdown(wait=True, cancel_futures=True)
    _extrapolate_naive(runs, d_seconds)
    return {
        "d_seconds": d_seconds,
        "clients": CLIENTS,
        "runs": runs,
        "note": (
            f"D = {d_seconds:g} s per firewall / rule collection group update (NSG updates take no time). "
            "Portcullis: time from the first initiate sent until the last grant's rules exist with their "
            "operation finished, including intake of all N requests (column intake_seconds in the JSON) and "
            "the converge queue's firewall batching delay. Naive: N read-modify-write cycles in sequence "
            "(firewall, then the subnet NSG), started with all N requests known, on twin firewalls, "
            "in the background while Portcullis's runs went on."
            + (
                ""
                if ctx.full or ctx.quick
                else " Default run: Firewall Policy burst measured at 10 and 50 grants (200 with --full); "
                "naive strategy measured at 10 and 50 (classic) and 10 (policy), other sizes extrapolated "
                "from its per-grant cost (N sequential cycles by construction)."
            )
        ),
    }


def _network_client(settings: dict[str, str], estate: ScaleEstate) -> Any:
    from shared.azure_clients import network_client
    from shared.settings import load_settings

    return network_client(estate.subscription_id, load_settings(settings))


def _portcullis(
    running: Any,
    client: app.ApiClient,
    estate: ScaleEstate,
    owner: dict[str, str],
    requester: app.Person,
    group: FirewallGroup,
    vms: list[VmInfo],
    d_seconds: float,
) -> dict[str, Any]:
    clear_arm_log(running.arm)
    request_ids: list[str] = []
    errors: list[str] = []
    wall_started = time.time()
    started = time.perf_counter()

    def ask(vm: VmInfo) -> None:
        status, answer = client.initiate(estate, owner[vm.vm_id.lower()], requester, vm.vm_id, 22)
        if status == 202:
            request_ids.append(answer["requestId"])
        else:
            errors.append(f"{status}: {str(answer)[:200]}")

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(ask, vms))
    intake = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} initiates failed, e.g. {errors[0]}")
    usable_at = _wait_usable(running, estate, group, vms, timeout=120 + 10 * d_seconds)
    seconds = usable_at - started
    # The API's view, on the last APP_STATUS_SAMPLE requests sent (the last to be converged).
    app_seconds, initiated = _wait_app_initiated(client, requester, request_ids[-APP_STATUS_SAMPLE:], started)
    counts = arm_counts(running.arm, user_agent_mark="portcullis/", path_marks=_marks(estate, group))
    firewall_type = FIREWALL_TYPES[group.kind].lower()
    # When each firewall write was sent, from the first initiate: the critical path at a glance.
    marks = _marks(estate, group)
    writes = [
        entry
        for entry in running.arm.admin_ok("GET", "/_emulator/requests")["log"]
        if entry["method"] in ("PUT", "DELETE") and any(mark in entry["path"].lower() for mark in marks)
    ]
    write_times = [round(e["time"] - wall_started, 2) for e in writes if e["type"].lower() == firewall_type]
    nsg_write_times = [
        round(e["time"] - wall_started, 2) for e in writes if "networksecuritygroups" in e["type"].lower()
    ]
    firewall_writes = sum(
        v
        for k, v in counts["by_kind"].items()
        if k.split(" ", 1)[0] in ("PUT", "DELETE") and k.split(" ", 1)[1].lower() == firewall_type
    )
    nsg_writes = sum(
        v
        for k, v in counts["by_kind"].items()
        if k.startswith(("PUT", "DELETE")) and "networksecuritygroups" in k.lower()
    )
    return {
        "intake_seconds": round(intake, 3),
        "seconds_to_last_usable": round(seconds, 3),
        "multiple_of_d": round(seconds / d_seconds, 2),
        "seconds_until_api_reports_all_initiated": round(app_seconds, 3) if app_seconds else None,
        "api_reports_initiated_of_sample": f"{initiated}/{min(len(request_ids), APP_STATUS_SAMPLE)}",
        "firewall_writes": firewall_writes,
        "firewall_write_sent_at_seconds": write_times,
        "nsg_write_sent_at_seconds": nsg_write_times,
        "nsg_writes": nsg_writes,
        "arm": counts,
    }


def _is_portcullis_vm(vm: VmInfo) -> bool:
    return vm.firewall is not None and vm.firewall.name.startswith("p")


def _wait_quiet(running: Any, quiet_seconds: float = 2.0, timeout: float = 90.0) -> None:
    """Wait until the app has sent ARM nothing for `quiet_seconds` (the policies' Deny baseline and
    the previous run's convergence are done), so one measurement does not pay for another's work.
    The naive strategy's requests (its twins' resources, operation polls) do not count."""
    naive_marks = ("/fw-n", "/fwpol-n", "/nsg-n", "/nic-vm-n", "/vm-n", "/operations/", "/nfvoperations/")
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        clear_arm_log(running.arm)
        time.sleep(quiet_seconds)
        entries = running.arm.admin_ok("GET", "/_emulator/requests")["log"]
        if not [e for e in entries if not any(mark in e["path"].lower() for mark in naive_marks)]:
            return
    log(f"burst: the app was still calling ARM after {timeout:.0f} s; measuring anyway")


def _marks(estate: ScaleEstate, group: FirewallGroup) -> tuple[str, ...]:
    """Path fragments of one group's resources (its firewall, policy, NSG, NICs and VMs)."""
    name = group.name.lower()
    return (f"/fw-{name}", f"/fwpol-{name}", f"/nsg-{name}-", f"/nic-vm-{name}-", f"/vm-{name}-")


def _dnat_rules(running: Any, estate: ScaleEstate, group: FirewallGroup) -> tuple[int, bool]:
    """(DNAT rules present, whether the resource holding them has finished updating)."""
    if group.kind == "classic":
        status, body = running.arm.admin("GET", f"/_emulator/resources{estate.firewall_id(group)}")
        if status != 200:
            return 0, False
        props = body.get("properties", {})
        rules = sum(
            len((c.get("properties") or {}).get("rules") or []) for c in props.get("natRuleCollections") or []
        )
        return rules, props.get("provisioningState") == "Succeeded"
    status, body = running.arm.admin(
        "GET", f"/_emulator/resources{estate.firewall_policy_id(group)}/ruleCollectionGroups/{GROUP_NAME}"
    )
    if status != 200:
        return 0, False
    props = body.get("properties", {})
    rules = sum(len(c.get("rules") or []) for c in props.get("ruleCollections") or [])
    return rules, props.get("provisioningState") == "Succeeded"


def _nsg_allows(running: Any, nsg_id: str) -> tuple[int, bool]:
    status, body = running.arm.admin("GET", f"/_emulator/resources{nsg_id}")
    if status != 200:
        return 0, False
    props = body.get("properties", {})
    allows = [
        r for r in props.get("securityRules") or [] if (r.get("properties") or {}).get("access") == "Allow"
    ]
    return len(allows), props.get("provisioningState") == "Succeeded"


def _wait_usable(
    running: Any, estate: ScaleEstate, group: FirewallGroup, vms: list[VmInfo], timeout: float
) -> float:
    """perf_counter() time when every grant's DNAT and NSG rules were first seen in place and settled."""
    nsg_id = vms[0].subnet_nsg_id
    assert nsg_id is not None
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        seen = time.perf_counter()
        rules, settled = _dnat_rules(running, estate, group)
        allows, nsg_settled = _nsg_allows(running, nsg_id)
        if rules >= len(vms) and settled and allows >= len(vms) and nsg_settled:
            return seen
        time.sleep(0.2)
    raise TimeoutError(
        f"{group.name}: grants not usable after {timeout:.0f} s ({rules} DNAT rules, {allows} NSG rules)"
    )


def _wait_app_initiated(
    client: app.ApiClient, requester: app.Person, request_ids: list[str], started: float, timeout: float = 60
) -> tuple[float | None, int]:
    """When the API reports every port Initiated (polled every 0.5 s); (seconds, ports Initiated)."""
    deadline = time.perf_counter() + timeout
    pending = set(request_ids)
    while pending and time.perf_counter() < deadline:
        for request_id in list(pending):
            status, body = client.request_status(request_id, requester)
            ports = (
                [p for vm in (body or {}).get("virtualMachines", []) for p in vm.get("ports", [])]
                if status == 200
                else []
            )
            if ports and all(p.get("status") == "Initiated" for p in ports):
                pending.discard(request_id)
        if pending:
            time.sleep(0.5)
    if pending:
        return None, len(request_ids) - len(pending)
    return time.perf_counter() - started, len(request_ids)


def _naive(
    network: Any, estate: ScaleEstate, vms: list[VmInfo], d_seconds: float, stop: threading.Event
) -> dict[str, Any]:
    grants = [(vm, 22, "198.51.100.0/24", 50000 + index) for index, vm in enumerate(vms)]
    outcome = NaiveJit(network, estate).open_all(grants, stop)
    return {
        "seconds": round(outcome.seconds, 3),
        "multiple_of_d": round(outcome.seconds / d_seconds, 2),
        "firewall_writes": outcome.firewall_writes,
        "nsg_writes": outcome.nsg_writes,
        "seconds_per_grant": round(outcome.seconds / len(vms), 3),
        "arm_reads": outcome.reads,
        "extrapolated": False,
    }


def _extrapolate_naive(runs: list[dict[str, Any]], d_seconds: float) -> None:
    """Sizes the naive strategy was not run at: N times its measured per-grant cost at the largest
    measured size (it is N sequential cycles by construction)."""
    for kind in ("classic", "policy"):
        measured = [r for r in runs if r["kind"] == kind and r.get("naive")]
        if not measured:
            continue
        basis = max(measured, key=lambda r: r["grants"])
        per_grant = basis["naive"]["seconds_per_grant"]
        for row in runs:
            if row["kind"] == kind and not row.get("naive"):
                n = row["grants"]
                row["naive"] = {
                    "seconds": round(per_grant * n, 3),
                    "multiple_of_d": round(per_grant * n / d_seconds, 2),
                    "firewall_writes": n,
                    "nsg_writes": n,
                    "seconds_per_grant": per_grant,
                    "extrapolated": True,
                    "basis": f"per-grant cost measured at {basis['grants']} grants",
                }
