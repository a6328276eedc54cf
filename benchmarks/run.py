"""Run the benchmarks: ``python -m benchmarks.run [--quick] [--out benchmarks/results]``.

Writes ``<out>/<date>-<host>.json`` (a header record with versions, hardware and load, then one record
per measurement) and ``<out>/<date>-<host>.md`` (the table). Uses CUDA when torch sees a GPU.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import psutil

from benchmarks.common import Settings, device_name, load_average

ROOT = Path(__file__).resolve().parents[1]
NOTES = [
    "Figures taken while other processes load the CPU (see the load columns) are inflated in absolute seconds; "
    "the ratios measured back to back (method / floor, medxai / peer) are the meaningful part.",
    "x floor = median / (passes the method needs x best per-sample pass time at this size); x b1 floor = the same "
    "with the batch-1 pass time, for methods that run one sample per pass and so cannot batch; x peer = medxai / peer "
    "(below 1: medxai faster). Peers do the same amount of work (steps, samples, windows) with the library's defaults otherwise.",
]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(*, quick: bool, device: str) -> dict[str, Any]:
    from medxai.attribution.provenance import library_versions

    import torch

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    return {"name": "header", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": safe_host(), "quick": quick, "device": gpu or "cpu", "versions": library_versions(),
            "cpu_model": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "ram_gib": psutil.virtual_memory().total / 2**30, "load_average_start": load_average()}


def safe_host() -> str:
    """The host name with anything but letters, digits, dots and dashes replaced, for file names."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", socket.gethostname()).strip("._-")[:40] or "host"


def group(rows: list[dict[str, Any]], produce: Callable[[], list[dict[str, Any]]], label: str) -> None:
    """Run one measurement group, stamping its rows with the load average before and after."""
    before = load_average()
    print(f"[bench] {label} (load {before})", file=sys.stderr, flush=True)
    produced = produce()
    after = load_average()
    for row in produced:
        row.update(group=label, load_before=before, load_after=after)
    rows.extend(produced)


def radiomics_rows(*, quick: bool, out: Path, repeats: int) -> list[dict[str, Any]]:
    """Full: run ``benchmarks/radiomics_speed.py``; quick: reuse its last result if there is one."""
    path = out / "radiomics_speed.json"
    if not quick:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "radiomics_speed.py"), "--out", str(path), "--repeats", str(repeats)],
                       check=True)
    if not path.exists():
        return [{"name": "radiomics", "method": "radiomics", "size": "", "error": "no radiomics_speed.json (run make bench)"}]
    rows = json.loads(path.read_text())
    for row in rows:
        row["source"] = "measured in this run" if not quick else f"previous run of benchmarks/radiomics_speed.py ({path.name}), not re-measured"
    return rows


def write_run(head: dict[str, Any], rows: list[dict[str, Any]], out: Path, stem: str) -> tuple[Path, Path]:
    """``out/<stem>.json`` (the header record, then the rows) and ``out/<stem>.md`` (the table), atomically."""
    from benchmarks.report import markdown
    from medxai.io.atomic import write_text_atomic

    head["load_average_end"] = load_average()
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    write_text_atomic(json_path, json.dumps([head, *rows], indent=1, default=str) + "\n")
    write_text_atomic(md_path, markdown(head, rows, NOTES))
    return json_path, md_path


def run(settings: Settings, out: Path) -> tuple[Path, Path]:
    from benchmarks.end_to_end import demo_record, pipeline_record
    from benchmarks.memory import memory_records
    from medxai.attribution.registry import METHODS

    device = device_name()
    head = header(quick=settings.quick, device=device)
    rows: list[dict[str, Any]] = []
    method_groups(settings, rows, device=device)
    group(rows, lambda: radiomics_rows(quick=settings.quick, out=out, repeats=settings.repeats), "radiomics")
    for memory_size in settings.memory_sizes:
        group(rows, lambda: memory_records(list(METHODS), arch=settings.method_model, size=memory_size, device=device),
              f"memory {settings.method_model} {memory_size}^3")
    group(rows, lambda: [demo_record(settings.demo_args, repeats=settings.end_to_end_repeats, device=device),
                         pipeline_record(settings.pipeline_cases, repeats=settings.end_to_end_repeats, device=device)],
          "end to end")
    return write_run(head, rows, out, f"{dt.date.today().isoformat()}-{safe_host()}{'-quick' if settings.quick else ''}")


def method_groups(settings: Settings, rows: list[dict[str, Any]], *, device: str) -> None:
    """The floors, then every method, its peers, ROI occlusion vs MONAI and the metrics on the method model."""
    from benchmarks.attribution_cost import attribution_records
    from benchmarks.floor import floor_records, make_model
    from benchmarks.metrics_cost import metric_records
    from benchmarks.peers import peer_records, roi_occlusion_record

    for arch, size, batches in settings.floor_cases:
        group(rows, lambda: floor_records(arch, size, device=device, repeats=settings.repeats, batch_sizes=batches,
                                          warmup=settings.floor_warmup)[0], f"floor {arch} {size}^3")
    arch, size = settings.method_model, settings.method_size
    network, inputs = make_model(arch, size, device=device)
    floor_rows, floor = floor_records(arch, size, device=device, repeats=settings.repeats, batch_sizes=settings.batch_sizes)
    if (arch, size) not in {(a, s) for a, s, _ in settings.floor_cases}:
        rows.extend(floor_rows)
    options = settings.method_options
    group(rows, lambda: attribution_records(network, inputs, floor, arch=arch, device=device, repeats=settings.repeats,
                                            configured=options), f"methods {arch} {size}^3")
    group(rows, lambda: peer_records(network, inputs, arch=arch, device=device, repeats=settings.repeats,
                                     configured=options), f"peers {arch} {size}^3")
    roi_size, window, stride = settings.roi_case
    roi_network, _ = make_model(arch, roi_size, device=device)
    group(rows, lambda: [roi_occlusion_record(roi_network, size=roi_size, window=window, stride=stride, arch=arch,
                                              device=device, repeats=settings.repeats)], "occlusion ROI vs MONAI")
    group(rows, lambda: metric_records(network, inputs, floor, arch=arch, device=device, repeats=settings.repeats),
          f"metrics {arch} {size}^3")


def run_methods(arch: str, size: int, out: Path) -> tuple[Path, Path]:
    """Only the method groups (floor, methods, peers, ROI occlusion, metrics) on ``arch`` at ``size``^3."""
    settings = Settings.methods_at(arch, size)
    device = device_name()
    head = header(quick=False, device=device)
    rows: list[dict[str, Any]] = []
    method_groups(settings, rows, device=device)
    return write_run(head, rows, out, f"{dt.date.today().isoformat()}-{safe_host()}-methods-{arch}-{size}")


def run_floors(arch: str, sizes: tuple[int, ...], out: Path, *, batch_sizes: tuple[int, ...] = (1, 2, 4)) -> tuple[Path, Path]:
    """Only the pass floors (forward, forward+backward at each batch size) of ``arch`` at ``sizes``^3."""
    from benchmarks.floor import floor_records

    device = device_name()
    head = header(quick=False, device=device)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        group(rows, lambda: floor_records(arch, size, device=device, repeats=3, batch_sizes=batch_sizes)[0],
              f"floor {arch} {size}^3")
    return write_run(head, rows, out, f"{dt.date.today().isoformat()}-{safe_host()}-floor-{arch}")


def run_memory(settings: Settings, out: Path, *, arch: str, sizes: tuple[int, ...]) -> tuple[Path, Path]:
    """Only the peak-memory group (every method, automatic batching) at ``sizes`` for ``arch``."""
    from benchmarks.memory import memory_records
    from medxai.attribution.registry import METHODS

    device = device_name()
    head = header(quick=settings.quick, device=device)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        group(rows, lambda: memory_records(list(METHODS), arch=arch, size=size, device=device), f"memory {arch} {size}^3")
    return write_run(head, rows, out, f"{dt.date.today().isoformat()}-{safe_host()}-memory-{arch}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the few-minute version (make bench-quick)")
    parser.add_argument("--memory-only", metavar="SIZES", default=None,
                        help="only the peak-memory group at these comma-separated sizes (e.g. 128,256)")
    parser.add_argument("--methods-only", metavar="ARCH:SIZE", default=None,
                        help="only the floor, method, peer and metric groups on that model and size (e.g. resnet18:64)")
    parser.add_argument("--floor-only", metavar="ARCH:SIZES", default=None,
                        help="only the pass floors of that model at these sizes, batch 1, 2, 4 (e.g. resnet18:96,128)")
    parser.add_argument("--arch", default=None, help="with --memory-only: the model (default: the run's method model)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    settings = Settings.make(quick=args.quick)
    if args.methods_only:
        arch, _, size = args.methods_only.partition(":")
        json_path, md_path = run_methods(arch, int(size), args.out)
    elif args.floor_only:
        arch, _, sizes = args.floor_only.partition(":")
        json_path, md_path = run_floors(arch, tuple(int(part) for part in sizes.split(",")), args.out)
    elif args.memory_only:
        sizes = tuple(int(part) for part in args.memory_only.split(","))
        json_path, md_path = run_memory(settings, args.out, arch=args.arch or settings.method_model, sizes=sizes)
    else:
        json_path, md_path = run(settings, args.out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
