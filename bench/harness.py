"""What every scenario shares: the machine's description, percentiles, a peak-RSS sampler, counters
of ARM requests (the emulator's own request log) and of Table/Queue requests (a counting wrapper
around azure-core's HTTP transport), and the long-lived local services (one Azurite, one emulator)
a run talks to.

Scenarios return plain JSON-able dicts; `bench/report.py` renders them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from localrig.azurite import Azurite, start_azurite
from localrig.emulator import Emulator, start_emulator
from localrig.emulator_client import EmulatorClient
from localrig.processes import PROJECT_ROOT


class BudgetSpent(BaseException):
    """The run's time budget ended: raised in the main thread by the budget's alarm, or by a scenario
    that has nothing left to measure within it (a BaseException so that a scenario's
    `except Exception` cannot swallow it)."""


# ---- numbers ----


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """count, min, p50, p95, p99, max, mean of `values` (seconds or whatever unit they are in)."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "count": len(values),
        "min": rounded(min(values)) if values else None,
        "p50": rounded(percentile(values, 50)),
        "p95": rounded(percentile(values, 95)),
        "p99": rounded(percentile(values, 99)),
        "max": rounded(max(values)) if values else None,
        "mean": rounded(sum(values) / len(values)) if values else None,
    }


# ---- the machine ----


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def git_commit() -> tuple[str, bool]:
    """(commit hash or 'unknown', whether the working tree has uncommitted changes)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, dirty


def machine() -> dict[str, Any]:
    memory = _memory_bytes()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1) if memory else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
    }


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---- memory ----


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 elsewhere)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    return 0


class PeakRss:
    """Samples this process's RSS every `interval` seconds while active: the peak of one phase
    (ru_maxrss is the peak of the whole process life, which includes set-up)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.start_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        self.start_bytes = self.peak_bytes = rss_bytes()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, rss_bytes())

    def as_dict(self) -> dict[str, float]:
        return {
            "rss_start_mib": round(self.start_bytes / 2**20, 1),
            "rss_peak_mib": round(self.peak_bytes / 2**20, 1),
            "rss_growth_mib": round((self.peak_bytes - self.start_bytes) / 2**20, 1),
        }


# ---- counting requests ----


def arm_counts(
    emulator: EmulatorClient,
    *,
    user_agent_mark: str | None = None,
    path_marks: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Reads and writes the emulator answered since its log was last cleared, by method and type.
    Operation polls (`GET .../operations/...`) are counted apart: they are waiting, not work.
    With `path_marks`, only requests whose path contains one of them (lower-case) are counted (and
    operation polls, which name no resource, are not)."""
    answer = emulator.admin_ok("GET", "/_emulator/requests")
    log = answer["log"]
    if user_agent_mark is not None:
        log = [entry for entry in log if _by_app(entry, user_agent_mark)]
    if path_marks is not None:
        log = [entry for entry in log if any(mark in entry["path"].lower() for mark in path_marks)]
    by_kind: Counter[str] = Counter()
    reads = writes = polls = throttled = 0
    for entry in log:
        if entry.get("status") == 429:
            # Refused by the throttle: not work done, counted apart (and ARM does not charge it).
            throttled += 1
            continue
        kind = f"{entry['method']} {entry['type']}"
        by_kind[kind] += 1
        if entry["type"] == "operations" or "/operations/" in entry["path"].lower():
            polls += 1
        elif entry["method"] in ("GET", "HEAD"):
            reads += 1
        else:
            writes += 1
    return {
        "reads": reads,
        "writes": writes,
        "operation_polls": polls,
        "throttled_429s": throttled,
        "emulator_throttle_stats": throttle_stats(answer),
        "by_kind": dict(sorted(by_kind.items())),
    }


def throttle_stats(requests_answer: dict[str, Any]) -> dict[str, Any] | None:
    """The emulator's own throttling figures in its `/_emulator/requests` answer, whatever they are
    called (the throttle is new: any top-level or `stats` key naming 429s or throttling); None when
    this emulator reports none."""
    found: dict[str, Any] = {}
    for source in (requests_answer, requests_answer.get("stats") or {}):
        if not isinstance(source, dict):
            continue
        for key, value in source.items():
            if key in ("log", "counts"):
                continue
            if "429" in key or "throttl" in key.lower():
                found[key] = value
    return found or None


def throttle_config(emulator: EmulatorClient) -> dict[str, Any]:
    """What the emulator says about its ARM throttle (`GET /_emulator/throttle`), or that it has none."""
    status, answer = emulator.admin("GET", "/_emulator/throttle")
    if status == 404 and not (isinstance(answer, dict) and "enabled" in answer):
        return {"available": False}
    if status >= 400:
        return {"available": False, "status": status}
    config = answer if isinstance(answer, dict) else {"answer": answer}
    config = {k: v for k, v in config.items() if k != "buckets"}  # per caller: see throttle_buckets
    return {"available": True, **config}


def throttle_buckets(emulator: EmulatorClient, subscription_id: str) -> list[dict[str, Any]]:
    """The throttle's buckets for one subscription now (tokens remaining, taken, 429s), if any."""
    status, answer = emulator.admin("GET", "/_emulator/throttle")
    if status >= 400 or not isinstance(answer, dict):
        return []
    return [
        {k: v for k, v in bucket.items() if k != "subscription"}
        for bucket in answer.get("buckets") or []
        if str(bucket.get("subscription", "")).lower() == subscription_id.lower()
    ]


def refill_throttle(emulator: EmulatorClient, config: dict[str, Any]) -> float:
    """Full buckets before a measured phase: the throttle's reset switch (`PUT /_emulator/throttle
    {"reset": true}`), else waiting for them to refill. Returns the seconds waited."""
    if not config.get("available") or config.get("enabled") is False:
        return 0.0
    status, _ = emulator.admin("PUT", "/_emulator/throttle", {"reset": True})
    if status < 400:
        return 0.0
    wait = throttle_refill_seconds(config)
    time.sleep(wait)
    return wait


CAPACITY_KEYS = ("capacity", "burst", "size", "tokens")
RATE_KEYS = ("rate", "refill_per_second", "per_second", "refill")


def throttle_refill_seconds(config: dict[str, Any]) -> float:
    """How long an idle caller waits for full read and write buckets: the largest capacity / rate the
    throttle's config names, else ARM's (reads 250 at 25/s, writes 200 at 10/s: 20 s); 0 without a
    throttle."""
    if not config.get("available") or config.get("enabled") is False:
        return 0.0
    longest = 0.0

    def walk(node: Any) -> None:
        nonlocal longest
        if isinstance(node, dict):
            capacity = next((node[k] for k in CAPACITY_KEYS if k in node), None)
            rate = next((node[k] for k in RATE_KEYS if k in node), None)
            if isinstance(capacity, int | float) and isinstance(rate, int | float) and rate > 0:
                longest = max(longest, float(capacity) / float(rate))
            for value in node.values():
                walk(value)

    walk(config)
    return longest or 20.0


def _by_app(entry: dict[str, Any], user_agent_mark: str) -> bool:
    """Whether the app (its SDK clients' User-Agent) sent this request. Emulator versions that do not
    log the User-Agent count everything: scenarios clear the log before each measured phase, and
    their own set-up calls are admin calls, which the log does not hold."""
    agent = entry.get("user_agent")
    return agent is None or user_agent_mark in agent


def clear_arm_log(emulator: EmulatorClient) -> None:
    emulator.admin_ok("DELETE", "/_emulator/requests")


class ArmAnswerCounter:
    """What ARM (the emulator) answered this process, seen from the client: answers 429 (azure-core
    retries them below the app, so the app never sees them) and the lowest remaining budget in the
    `x-ms-ratelimit-remaining-subscription-reads` / `-writes` headers. Wraps RequestsTransport.send
    like StorageRequestCounter; instrumentation only."""

    HEADERS: ClassVar[dict[str, str]] = {
        "x-ms-ratelimit-remaining-subscription-reads": "min_remaining_reads",
        "x-ms-ratelimit-remaining-subscription-writes": "min_remaining_writes",
    }

    def __init__(self, arm_port: int) -> None:
        self._port = arm_port
        self._lock = threading.Lock()
        self.answers = 0
        self.throttled = 0
        self.minimum: dict[str, int] = {}
        self._original: Any = None

    def install(self) -> None:
        from azure.core.pipeline.transport import RequestsTransport

        original = RequestsTransport.send
        counter = self

        def send(transport: Any, request: Any, **kwargs: Any) -> Any:
            response = original(transport, request, **kwargs)
            counter._count(request, response)
            return response

        self._original = original
        RequestsTransport.send = send

    def uninstall(self) -> None:
        from azure.core.pipeline.transport import RequestsTransport

        if self._original is not None:
            RequestsTransport.send = self._original

    def _count(self, request: Any, response: Any) -> None:
        from urllib.parse import urlsplit

        if (urlsplit(request.url).port or 443) != self._port:
            return
        headers = getattr(response, "headers", {}) or {}
        with self._lock:
            self.answers += 1
            if getattr(response, "status_code", None) == 429:
                self.throttled += 1
            for header, name in self.HEADERS.items():
                value = headers.get(header)
                if value is None:
                    continue
                try:
                    number = int(value)
                except ValueError:
                    continue
                self.minimum[name] = min(self.minimum.get(name, number), number)

    def reset(self) -> None:
        with self._lock:
            self.answers = self.throttled = 0
            self.minimum.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"answers": self.answers, "throttled_429s": self.throttled, **self.minimum}


class StorageRequestCounter:
    """Counts HTTP requests this process sends to Azurite, by service (table/queue) and method,
    by wrapping azure-core's RequestsTransport.send. Instrumentation only: every request still goes
    to Azurite unchanged. Only for bench worker processes."""

    def __init__(self, azurite_ports: dict[int, str]) -> None:
        self._ports = azurite_ports
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._original: Any = None

    def install(self) -> None:
        from azure.core.pipeline.transport import RequestsTransport

        original = RequestsTransport.send
        counter = self

        def send(transport: Any, request: Any, **kwargs: Any) -> Any:
            counter._count(request)
            return original(transport, request, **kwargs)

        self._original = original
        RequestsTransport.send = send

    def uninstall(self) -> None:
        from azure.core.pipeline.transport import RequestsTransport

        if self._original is not None:
            RequestsTransport.send = self._original

    def _count(self, request: Any) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(request.url)
        service = self._ports.get(parts.port or 0)
        if service is None:
            return
        method = request.method.upper()
        # A Table batch is one POST to $batch carrying several writes: one request, counted as a write.
        kind = "read" if method in ("GET", "HEAD") else "write"
        with self._lock:
            self.counts[f"{service}_{kind}s"] += 1

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


# ---- the services a run talks to ----


FAST_LRO_ARGS = [
    "--no-persist",
    "--log-level",
    "WARNING",
    "--lro-seconds",
    "default=0",
    "--lro-seconds",
    "Microsoft.Network/azureFirewalls=0",
    "--lro-seconds",
    "Microsoft.Network/firewallPolicies=0",
    "--lro-seconds",
    "Microsoft.Network/firewallPolicies/ruleCollectionGroups=0",
]


@dataclass
class Services:
    """One Azurite and one ARM emulator for the whole run (each scenario uses its own table prefix,
    queues and resource groups); the Functions host is started per scenario with its own settings."""

    work_dir: Path
    azurite: Azurite
    emulator: Emulator
    arm: EmulatorClient
    extra: dict[str, Any] = field(default_factory=dict)

    def storage_ports(self) -> dict[int, str]:
        return {
            self.azurite.table_port: "table",
            self.azurite.queue_port: "queue",
            self.azurite.blob_port: "blob",
        }

    def stop(self) -> None:
        self.emulator.stop()
        self.azurite.stop()


@contextlib.contextmanager
def services(work_dir: Path) -> Iterator[Services]:
    work_dir.mkdir(parents=True, exist_ok=True)
    azurite = start_azurite(work_dir / "azurite", log_path=work_dir / "azurite.log")
    try:
        emulator = start_emulator(
            work_dir / "emulator", extra_args=FAST_LRO_ARGS, log_path=work_dir / "emulator.log"
        )
    except BaseException:
        azurite.stop()
        raise
    running = Services(work_dir, azurite, emulator, EmulatorClient(emulator.base_url, emulator.ca_file))
    try:
        yield running
    finally:
        running.stop()


def app_settings(running: Services, table_prefix: str, **extra: str) -> dict[str, str]:
    """The app's settings against the run's services (as localrig.stack.host_environment, plus a
    table prefix and queue names of the scenario's own)."""
    return {
        "AzureWebJobsStorage": running.azurite.connection_string,
        "PORTCULLIS_ARM_ENDPOINT": running.emulator.base_url,
        "PORTCULLIS_ARM_CA_BUNDLE": str(running.emulator.ca_file),
        "PORTCULLIS_ARM_CREDENTIAL": "static-token",
        "PORTCULLIS_ARM_POLLING_INTERVAL": "0",
        "WEBSITE_AUTH_ENABLED": "true",
        "PORTCULLIS_TABLE_PREFIX": table_prefix,
        "PORTCULLIS_REQUESTS_QUEUE": f"{table_prefix}-requests",
        "PORTCULLIS_CONVERGE_QUEUE": f"{table_prefix}-converge",
        "PORTCULLIS_EVENTS_QUEUE": f"{table_prefix}-events",
        **extra,
    }


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def log(message: str) -> None:
    stamp = utc_now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)
