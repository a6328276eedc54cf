"""The benchmark record producers write the schema the runner and the Markdown table rely on."""
from __future__ import annotations

import pytest

from benchmarks.common import REQUIRED_KEYS
from benchmarks.floor import floor_records
from benchmarks.report import markdown
from benchmarks.run import safe_host


def test_floor_records_have_the_schema_and_ratio_is_median_over_floor():
    rows, floor = floor_records("tiny", 16, device="cpu", repeats=1, batch_sizes=(1, 2), warmup=0)
    assert len(rows) == 4  # forward and forward+backward at batch 1 and 2
    for row in rows:
        assert set(REQUIRED_KEYS) <= set(row), row
        assert row["median_s"] > 0 and row["floor_s"] > 0 and row["repeats"] == 1
        assert row["ratio_to_floor"] == pytest.approx(row["median_s"] / row["floor_s"])
        assert row["ratio_to_floor"] >= 1.0 - 1e-9  # the floor is the best per-sample time
    assert floor.forward_s == min(r["median_s"] for r in rows if "/forward/" in r["name"])
    assert floor.cost(forward=2, backward=3) == pytest.approx(2 * floor.forward_s + 3 * floor.backward_s)
    table = markdown({"date": "d", "host": "h", "quick": True, "device": "cpu", "cpu_model": "x", "cores": 2,
                      "ram_gib": 1.0, "versions": {"torch": "t"}, "load_average_start": 1.0}, rows, ["note"])
    assert table.count("| floor/tiny/16/") == 4


def test_host_name_is_safe_for_file_names():
    assert safe_host() and all(c.isalnum() or c in ".-_" for c in safe_host())
