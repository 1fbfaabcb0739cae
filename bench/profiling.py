"""cProfile summaries small enough for a report: where the time of a measured call goes."""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable
from typing import Any

from localstack.processes import PROJECT_ROOT


def _label(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    root = str(PROJECT_ROOT) + "/"
    if filename.startswith(root):
        filename = filename[len(root) :]
    elif "site-packages/" in filename:
        filename = filename.split("site-packages/", 1)[1]
    return f"{filename}:{line}({function})"


def profile(call: Callable[[], Any], top: int = 12) -> tuple[Any, dict[str, Any]]:
    """Run `call` under cProfile; returns its result and the top functions of ours by cumulative time
    and the top functions overall by own time (seconds)."""
    profiler = cProfile.Profile()
    result = profiler.runcall(call)
    stats = pstats.Stats(profiler)
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = [
        {
            "function": _label(key),
            "calls": value[1],
            "own_s": round(value[2], 4),
            "cumulative_s": round(value[3], 4),
        }
        for key, value in entries.items()
    ]
    ours = [row for row in rows if row["function"].startswith(("shared/", "function_app"))]
    return result, {
        "total_s": round(getattr(stats, "total_tt", 0.0), 3),
        "ours_by_cumulative": sorted(ours, key=lambda r: r["cumulative_s"], reverse=True)[:top],
        "all_by_own_time": sorted(rows, key=lambda r: r["own_s"], reverse=True)[:top],
    }
