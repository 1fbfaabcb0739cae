"""The benchmark harness must not rot: a scaled-down run writes its report, and what it measures
holds (a pass over an estate that did not drift writes nothing to ARM; one that drifted does)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.__main__ import main
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
