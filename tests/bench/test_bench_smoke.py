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
from bench.scenarios.estate_pass import verdict


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert summary([1.0, 2.0, 3.0, 4.0, 100.0])["p99"] == pytest.approx(96.16)


def test_quick_estate_pass_is_in_sync_then_writes_exactly_the_drifted_nsgs(tmp_path: Path) -> None:
    """The seeded estate is in sync by construction (the pass writes nothing to ARM), and after drift
    the pass writes the drifted NSGs and nothing else: the benchmark can show both."""
    assert main(["--quick", "--only", "estate_pass", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "latest.json").read_text())
    assert document["machine"]["cores"] and document["commit"]
    result = document["scenarios"]["estate_pass"]
    assert result["status"] == "ok", result
    measured = result["at_scale"]  # quick: 1 % of the estate, never labelled as the full one
    assert "full" not in result and measured["extrapolated"] is False
    assert measured["vms"] == 20 and measured["grants"] == 100 and measured["firewalls"] == 2
    assert measured["firewalls_classic"] == measured["firewalls_policy"] == 1
    assert measured["seeding"]["total_seconds"] > 0
    in_sync, drifted = measured["in_sync"], measured["drift_1pct"]
    for case in (in_sync, drifted):
        for key in ("wall_s", "arm_reads", "arm_writes", "table_reads", "table_writes", "peak_rss_mib"):
            assert case[key] is not None, key
        assert "throttled_429s" in case and case["finished"]
    assert in_sync["arm_writes"] == 0 and in_sync["arm_reads"] > 0
    assert in_sync["targets"]["arm_writes"]["met"] is True
    assert drifted["drifted_nsgs"] >= 1
    assert drifted["arm_writes"] == drifted["expected_arm_writes"] == drifted["drifted_nsgs"]
    assert drifted["unexpected_writes"] == [] and drifted["drifted_not_written"] == 0
    assert drifted["targets"]["arm_writes"]["met"] is True
    markdown = (tmp_path / "latest.md").read_text()
    assert "Estate pass" in markdown and "Failed" not in markdown and "could not render" not in markdown
    assert markdown == report.markdown(document)


def test_quick_revocation_measures_lag_while_a_full_pass_runs(tmp_path: Path) -> None:
    assert main(["--quick", "--only", "revocation", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "latest.json").read_text())["scenarios"]["revocation"]
    assert result["status"] == "ok", result
    during = {m["mode"]: m for m in result["modes"]}["during_full_pass"]
    assert during["grants"] == 3 and during["missed"] == 0 and during["rules_still_open_at_end"] == 0
    assert during["lag_seconds"]["p99"] is not None and during["target_p99_seconds"] == 5.0
    assert during["estate"]["vms"] == 20 and "still_running_when_measured" in during["pass"]
    assert "During a full pass over 20 VMs" in (tmp_path / "latest.md").read_text()


def test_the_verdict_shows_a_missed_target_and_an_unfinished_pass() -> None:
    measured = {
        "finished": True,
        "wall_s": 31.0,
        "arm_reads": 250,
        "arm_writes": 0,
        "table_writes": 0,
        "peak_rss_mib": 120.0,
        "throttled_429s": 0,
    }
    checks = verdict("in_sync", measured)
    assert checks["wall_s"] == {"target": 30.0, "measured": 31.0, "met": False}
    assert all(checks[k]["met"] for k in ("arm_reads", "arm_writes", "table_writes", "throttled_429s"))
    assert verdict("in_sync", measured, throttled=False)["throttled_429s"]["met"] is None
    unfinished = verdict("in_sync", {**measured, "finished": False, "wall_s": None})
    assert not any(check["met"] for check in unfinished.values())
    drift = {"finished": True, "wall_s": 5.0, "arm_writes": 3, "expected_arm_writes": 2}
    drift["unexpected_writes"] = []
    assert verdict("drift_1pct", drift)["arm_writes"]["met"] is False
    assert verdict("drift_1pct", {**drift, "arm_writes": 2, "drifted_not_written": 0})["arm_writes"]["met"]


def test_the_report_says_when_a_pass_was_stopped_unfinished() -> None:
    unfinished = {"finished": False, "wall_s": None, "stopped_after_s": 900.0, "arm_reads": 5000}
    result = {
        "full": {"vms": 2000, "nsgs": 2010, "firewalls": 10, "grants": 10000, "in_sync": unfinished},
        "throttle": {"available": True, "enabled": True},
    }
    text = "\n".join(report._estate_pass(result))
    assert "Whole estate" in text and "stopped unfinished after 900.00 s" in text


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


def test_result_files_from_before_the_whole_estate_still_render() -> None:
    """`python -m bench.report` re-renders older result files (a fraction of the estate, extrapolated)."""
    document = json.loads((Path(report.RESULTS_DIR) / "2026-11-25-832aeb265914.json").read_text())
    text = report.figures(document)
    assert "Extrapolated to the full estate" in text and "could not render" not in text
