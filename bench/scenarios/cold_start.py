"""Scenario 5, cold start: time and memory to import `function_app` in a fresh interpreter, as a new
Functions worker does before it can serve anything; and which modules cost the most (-X importtime).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

from bench.harness import log, summary
from localrig.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from localrig.processes import PROJECT_ROOT

# Settings only have to validate: importing the app must not talk to storage or ARM.
_ENV = {
    "AzureWebJobsStorage": (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint=http://127.0.0.1:9/{ACCOUNT_NAME};TableEndpoint=http://127.0.0.1:9/{ACCOUNT_NAME};"
        f"BlobEndpoint=http://127.0.0.1:9/{ACCOUNT_NAME};"
    ),
    "PORTCULLIS_ARM_ENDPOINT": "https://127.0.0.1:9",
    "PORTCULLIS_ARM_CREDENTIAL": "static-token",
}

_PROBE = r"""
import json, resource, sys, time
started = time.perf_counter()
import function_app
seconds = time.perf_counter() - started
with open("/proc/self/statm") as f:
    rss = int(f.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE")
heavy = ["azure.mgmt.network", "azure.mgmt.compute", "azure.mgmt.authorization", "azure.mgmt.security",
         "azure.identity", "azure.data.tables", "azure.storage.queue", "pydantic", "cryptography", "jwt"]
print(json.dumps({
    "seconds": seconds,
    "rss_bytes": rss,
    "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "modules": len(sys.modules),
    "functions": len(function_app.app.get_functions()),
    "loaded_heavy": [m for m in heavy if m in sys.modules],
}))
"""

_BASELINE = r"""
import json, resource, time
with open("/proc/self/statm") as f:
    rss = int(f.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE")
print(json.dumps({"rss_bytes": rss}))
"""


def _run(code: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *extra, "-c", code],
        cwd=PROJECT_ROOT,
        env={**os.environ, **_ENV, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )


def import_profile(top: int = 15) -> list[dict[str, Any]]:
    """The `top` modules with the largest cumulative import time (microseconds), from -X importtime."""
    result = _run("import function_app", "-X", "importtime")
    rows: list[dict[str, Any]] = []
    pattern = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
    for line in result.stderr.splitlines():
        match = pattern.match(line)
        if match:
            rows.append(
                {
                    "module": match.group(4),
                    "self_us": int(match.group(1)),
                    "cumulative_us": int(match.group(2)),
                    "depth": len(match.group(3)) // 2,
                }
            )
    # Down to the packages our modules import (depth 3): where a lazy import would save time.
    shallow = [row for row in rows if 1 <= row["depth"] <= 3]
    return sorted(shallow, key=lambda row: row["cumulative_us"], reverse=True)[:top]


def run(ctx: Any) -> dict[str, Any]:
    repeats = 3 if ctx.quick else 7
    # The first import in a fresh tree compiles .pyc files; measure warm-cache imports, as a worker
    # restart in Azure does (the deployment package ships compiled files).
    _run("import function_app")
    samples = []
    for _ in range(repeats):
        samples.append(json.loads(_run(_PROBE).stdout))
    baseline = json.loads(_run(_BASELINE).stdout)
    seconds = [s["seconds"] for s in samples]
    rss = [s["rss_bytes"] / 2**20 for s in samples]
    profile = import_profile()
    log(
        f"cold start: import function_app p50 {summary(seconds)['p50']:.3f} s, "
        f"rss {summary(rss)['p50']:.0f} MiB"
    )
    return {
        "repeats": repeats,
        "import_seconds": summary(seconds),
        "rss_after_import_mib": summary(rss, 1),
        "interpreter_baseline_rss_mib": round(baseline["rss_bytes"] / 2**20, 1),
        "modules_loaded": samples[-1]["modules"],
        "functions_indexed": samples[-1]["functions"],
        "heavy_modules_loaded_at_import": samples[-1]["loaded_heavy"],
        "slowest_imports": profile,
    }
