"""cProfile summaries small enough for a report: where the time of a measured call goes."""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable
from typing import Any

from localrig.processes import PROJECT_ROOT


def _label(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    root = str(PROJECT_ROOT) + "/"
    if filename.startswith(root):
        filename = filename[len(root) :]
    elif "site-packages/" in filename:
        filename = filename.split("site-packages/", 1)[1]
    return f"{filename}:{line}({function})"


def profile(
    call: Callable[[], Any], top: int = 12, watch: tuple[str, ...] = ()
) -> tuple[Any, dict[str, Any]]:
    """Run `call` under cProfile; returns its result and the top functions of ours by cumulative time
    and the top functions overall by own time (seconds); `watch` names functions (`file.py:function`,
    e.g. `converge.py:_policies`) whose cumulative time is reported whatever their rank."""
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
    watched = {}
    for name in watch:
        filename, _, function = name.partition(":")
        watched[name] = round(
            sum(
                value[3]
                for key, value in entries.items()
                if key[0].endswith("/" + filename) and key[2] == function
            ),
            4,
        )
    return result, {
        "total_s": round(getattr(stats, "total_tt", 0.0), 3),
        "watched_cumulative_s": watched,
        "ours_by_cumulative": sorted(ours, key=lambda r: r["cumulative_s"], reverse=True)[:top],
        "all_by_own_time": sorted(rows, key=lambda r: r["own_s"], reverse=True)[:top],
    }
