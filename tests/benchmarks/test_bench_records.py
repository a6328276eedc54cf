"""The benchmark record producers write the schema the runner and the Markdown table rely on."""
from __future__ import annotations

import pytest

import torch

from benchmarks.attribution_cost import method_options, method_runner, passes
from benchmarks.common import REQUIRED_KEYS
from benchmarks.floor import floor_records, make_model
from medxai.attribution.registry import METHODS
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
    batch_1 = {r["name"].split("/")[3]: r["median_s"] for r in rows if r["name"].endswith("/b1")}
    assert floor.cost_at_batch_1(forward=2, backward=3) == pytest.approx(2 * batch_1["forward"] + 3 * batch_1["forward+backward"])
    assert floor.cost_at_batch_1(forward=2, backward=3) >= floor.cost(forward=2, backward=3)
    table = markdown({"date": "d", "host": "h", "quick": True, "device": "cpu", "cpu_model": "x", "cores": 2,
                      "ram_gib": 1.0, "versions": {"torch": "t"}, "load_average_start": 1.0}, rows, ["note"])
    assert table.count("| floor/tiny/16/") == 4


def test_floor_backward_takes_the_input_gradient_only_as_the_methods_do():
    """Weight gradients are work no attribution method does; a floor that computed them would be too slow."""
    from benchmarks.floor import _backward

    network, inputs = make_model("tiny", 16, device="cpu")
    _backward(network, inputs)
    assert all(parameter.grad is None for parameter in network.parameters())


@pytest.mark.parametrize("name", METHODS)
def test_counted_passes_are_the_samples_the_method_puts_through_the_network(name):
    """The floor of every method is its counted passes: count the samples through the first convolution
    (a global hook, so copies made for hook-based methods and the LRP graph are counted too) in a second
    call, as the benchmark's median times them (the first builds the cached network copies)."""
    network, inputs = make_model("tiny", 16, device="cpu")
    options = method_options(name, "tiny", {"integrated_gradients": {"n_steps": 4, "max_steps": 4}, "smoothgrad": {"n_samples": 3},
                                            "smooth_gradcampp": {"n_samples": 2}, "occlusion": {"window_mm": 8.0, "stride_mm": 8.0},
                                            "feature_ablation": {"supervoxel_mm": 8.0}})
    call, last = method_runner(name, network, inputs, device="cpu", batch_size=4, options=options)
    call()
    samples = []

    def first_convolution(module, args, _output):
        if isinstance(module, torch.nn.Conv3d) and module.in_channels == inputs.shape[1]:
            samples.append(int(args[0].shape[0]))

    handle = torch.nn.modules.module.register_module_forward_hook(first_convolution)
    try:
        call()
    finally:
        handle.remove()
    counted = passes(name, last["params"], last["diagnostics"], tuple(inputs.shape[2:]))
    assert sum(samples) == counted["forward"] + counted["backward"], (samples, counted)


def test_host_name_is_safe_for_file_names():
    assert safe_host() and all(c.isalnum() or c in ".-_" for c in safe_host())


def test_floor_only_run_writes_every_size_and_batch(tmp_path):
    import json

    from benchmarks.run import main

    assert main(["--floor-only", "tiny:16,24", "--out", str(tmp_path)]) == 0
    (json_path,) = tmp_path.glob("*-floor-tiny.json")
    names = {row["name"] for row in json.loads(json_path.read_text())[1:]}
    assert names == {f"floor/tiny/{size}/{kind}/b{batch}"
                     for size in (16, 24) for kind in ("forward", "forward+backward") for batch in (1, 2, 4)}
    assert json_path.with_suffix(".md").read_text().count("| floor/tiny/") == 12


def test_captum_peers_compute_the_same_heatmaps_as_the_methods_they_are_compared_with():
    """A peer must do the same work as the medxai method it is timed against (same steps, windows, rules,
    supervoxels), or the ratio measures a different computation. SmoothGrad draws other noise and MONAI's
    GradCAM rescales its map to [0, 1], so those two are compared by shape only."""
    from benchmarks.attribution_cost import cam_layer
    from benchmarks.peers import _captum_peers

    network, inputs = make_model("tiny", 16, device="cpu")
    with torch.no_grad():
        index = int(network(inputs)[0].argmax())
    options = {"integrated_gradients": {"n_steps": 4, "max_steps": 4}, "smoothgrad": {"n_samples": 3},
               "occlusion": {"window_mm": 8.0, "stride_mm": 8.0}, "feature_ablation": {"supervoxel_mm": 8.0}}
    peers = _captum_peers(network, inputs, index, layer=cam_layer("tiny"), options=options)
    assert set(METHODS) - {key.split("/")[0] for key in peers} == {"gradcampp", "smooth_gradcampp"}  # not in Captum/MONAI
    for key, (_label, peer) in peers.items():
        name = key.split("/")[0]
        ours, _ = method_runner(name, network, inputs, device="cpu", batch_size=4, options=method_options(name, "tiny", options))
        mine, theirs = ours().detach(), peer().detach()
        assert theirs.shape == mine.shape, key
        if name != "smoothgrad" and key != "gradcam/monai":
            torch.testing.assert_close(theirs, mine, rtol=1e-4, atol=1e-6 * float(mine.abs().max()), msg=key)


def test_an_interrupted_run_resumes_keeping_the_groups_it_finished(tmp_path, monkeypatch):
    """A run stopped mid-way (here by an interrupt in its second group) leaves a partial file; --resume measures
    only what is missing and writes one result that says which session measured each row."""
    import json

    import benchmarks.floor
    from benchmarks.run import main

    real = benchmarks.floor.floor_records
    measured: list[int] = []

    def stopping_at_24(arch, size, **options):
        if size == 24:
            raise KeyboardInterrupt
        measured.append(size)
        return real(arch, size, **options)

    monkeypatch.setattr(benchmarks.floor, "floor_records", stopping_at_24)
    with pytest.raises(KeyboardInterrupt):
        main(["--floor-only", "tiny:16,24", "--out", str(tmp_path)])
    (partial,) = tmp_path.glob("*.partial.json")
    assert json.loads(partial.read_text())["done"] == ["floor tiny 16^3"] and not list(tmp_path.glob("*-floor-tiny.json"))

    def counting(arch, size, **options):
        measured.append(size)
        return real(arch, size, **options)

    monkeypatch.setattr(benchmarks.floor, "floor_records", counting)
    assert main(["--floor-only", "tiny:16,24", "--out", str(tmp_path), "--resume"]) == 0
    assert measured == [16, 24] and not partial.exists()
    head, *rows = json.loads(next(tmp_path.glob("*-floor-tiny.json")).read_text())
    assert len(head["sessions"]) == 2
    assert {row["name"].split("/")[2]: row["session"] for row in rows} == {"16": 0, "24": 1}


def test_a_failing_group_is_one_error_row_and_the_run_goes_on(tmp_path, monkeypatch):
    import json

    import benchmarks.floor
    from benchmarks.run import main

    real = benchmarks.floor.floor_records

    def failing_at_16(arch, size, **options):
        if size == 16:
            raise RuntimeError("simulated failure\nsecond line")
        return real(arch, size, **options)

    monkeypatch.setattr(benchmarks.floor, "floor_records", failing_at_16)
    assert main(["--floor-only", "tiny:16,24", "--out", str(tmp_path)]) == 0
    _head, *rows = json.loads(next(tmp_path.glob("*-floor-tiny.json")).read_text())
    errors = [row for row in rows if "error" in row]
    assert [(row["name"], row["error"]) for row in errors] == [("group/floor tiny 16^3", "RuntimeError: simulated failure")]
    assert sum(1 for row in rows if row["name"].startswith("floor/tiny/24/")) == 6
