"""The benchmark harness must not rot: a scaled-down run writes its report, and what it measures
holds (a pass over an estate that did not drift writes nothing to ARM; one that drifted does)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.__main__ import Context, main
from bench.harness import percentile, summary
from bench.scenarios.estate_pass import _extrapolate


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert summary([1.0, 2.0, 3.0, 4.0, 100.0])["p99"] == pytest.approx(96.16)


def test_extrapolation_grows_the_quadratic_part_as_n_squared() -> None:
    def point(fraction: float, seconds: float, quadratic: float) -> dict[str, Any]:
        passes = [
            {
                "name": name,
                "seconds": seconds,
                "quadratic_seconds": quadratic,
                "arm": {"reads": 10, "writes": 0},
                "storage": {"table_reads": 5},
            }
            for name in ("a", "b")
        ]
        return {"scale": {"fraction_of_target": fraction}, "passes": passes}

    # At N = 0.2: 16 s linear -> 80 s, 8 s quadratic -> 200 s at N = 1; the N = 0.1 point checks it.
    first, _ = _extrapolate([point(0.1, 10.0, 2.0), point(0.2, 24.0, 8.0)])
    assert first["seconds"] == pytest.approx(280.0)
    assert "model 10.0 s, measured 10.0 s" in first["method"]
    assert first["arm_reads"] == 50  # request counts: linear from the largest scale
    linear, _ = _extrapolate([point(0.5, 5.0, 0.0)])
    assert linear["seconds"] == pytest.approx(10.0)


def test_quick_estate_pass_writes_report(tmp_path: Path) -> None:
    assert main(["--quick", "--only", "estate_pass", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "latest.json").read_text())
    assert document["machine"]["cores"] and document["commit"]
    result = document["scenarios"]["estate_pass"]
    assert result["status"] == "ok", result
    no_drift, drifted = result["passes"]
    assert no_drift["arm"]["writes"] == 0
    assert no_drift["arm"]["reads"] > 0 and no_drift["storage"]["table_reads"] > 0
    assert drifted["arm"]["writes"] >= 1
    markdown = (tmp_path / "latest.md").read_text()
    assert "Estate pass" in markdown and "Failed" not in markdown
    assert markdown == report.markdown(document)


def test_a_scenario_the_budget_cannot_hold_is_not_started_and_the_run_succeeds(tmp_path: Path) -> None:
    assert main(["--quick", "--only", "cold_start", "--budget", "1", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "latest.json").read_text())
    assert document["budget_seconds"] == 1
    result = document["scenarios"]["cold_start"]
    assert result["status"] == "cut_short" and "not started" in result["error"]
    markdown = (tmp_path / "latest.md").read_text()
    assert "Cut short (time budget)" in markdown and "| cold_start | cut_short | 0.0 s |" in markdown


def test_a_crashing_scenario_makes_the_run_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.scenarios import cold_start

    def crash(ctx: Any) -> dict[str, Any]:
        raise RuntimeError("scenario broke")

    monkeypatch.setattr(cold_start, "run", crash)
    assert main(["--quick", "--only", "cold_start", "--out", str(tmp_path)]) == 1
    result = json.loads((tmp_path / "latest.json").read_text())["scenarios"]["cold_start"]
    assert result["status"] == "failed" and "scenario broke" in result["error"]


def test_parts_beyond_the_budget_are_recorded_as_cut_short(tmp_path: Path) -> None:
    ctx = Context(quick=True, full=False, work_dir=tmp_path)
    assert ctx.fits(10**6, "anything")  # no budget: everything fits
    ctx.deadline = time.perf_counter() + 30
    assert ctx.fits(5, "a small part") and not ctx.cut_short
    assert not ctx.fits(60, "a big part")
    assert ctx.cut_short == [ctx.cut_short[0]] and ctx.cut_short[0].startswith("a big part skipped")
