"""Run the benchmarks: ``python -m benchmarks.run [--quick] [--out benchmarks/results]``.

Writes ``<out>/<date>-<host>.json`` (a header record with versions, hardware and load, then one record
per measurement) and ``<out>/<date>-<host>.md`` (the table). Uses CUDA when torch sees a GPU. The rows so
far are kept in ``<out>/<host>.partial.json`` after every group; ``--resume`` goes on from there.
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
from typing import Any

import psutil

from benchmarks.checkpoint import Checkpoint, session_record
from benchmarks.common import Settings, device_name, load_average
REAL_SIZE_GROUP = "real size 512x512x300, demo model"

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


def header(*, quick: bool, device: str, session: dict[str, Any]) -> dict[str, Any]:
    """Versions and hardware of the run; the CPU, threads and affinity are its first session's."""
    from medxai.attribution.provenance import library_versions

    import torch

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    return {"name": "header", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": safe_host(), "quick": quick, "device": gpu or "cpu", "versions": library_versions(),
            "cpu_model": session["cpu_model"], "cores": os.cpu_count(), "torch_threads": session["torch_threads"],
            "cpu_affinity": session["cpu_affinity"], "omp_num_threads": session["omp_num_threads"],
            "ram_gib": psutil.virtual_memory().total / 2**30, "load_average_start": session["load_average_start"]}


def safe_host() -> str:
    """The host name with anything but letters, digits, dots and dashes replaced, for file names."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", socket.gethostname()).strip("._-")[:40] or "host"


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


def open_run(out: Path, suffix: str, *, quick: bool, device: str, resume: bool) -> Checkpoint:
    """This run's checkpoint (``<out>/<host><suffix>.partial.json``), resumed from it when asked."""
    import torch

    session = session_record(cpu_model=_cpu_model(), torch_threads=torch.get_num_threads(),
                             cpu_affinity=sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                             omp_num_threads=os.environ.get("OMP_NUM_THREADS"))
    return Checkpoint.open(out / f"{safe_host()}{suffix}.partial.json", session=session,
                           header=lambda: header(quick=quick, device=device, session=session), resume=resume)


def write_run(checkpoint: Checkpoint, out: Path, suffix: str) -> tuple[Path, Path]:
    """``out/<date>-<host><suffix>.json`` (the header record, then the rows) and ``.md`` (the table), atomically;
    the checkpoint goes once they are written."""
    from benchmarks.report import markdown
    from medxai.io.atomic import write_text_atomic

    head = {**checkpoint.header, "load_average_end": load_average()}
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{dt.date.today().isoformat()}-{safe_host()}{suffix}"
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    write_text_atomic(json_path, json.dumps([head, *checkpoint.rows], indent=1, default=str) + "\n")
    write_text_atomic(md_path, markdown(head, checkpoint.rows, NOTES))
    checkpoint.finish()
    return json_path, md_path


def run(settings: Settings, out: Path, *, resume: bool = False) -> tuple[Path, Path]:
    from benchmarks.end_to_end import demo_record, pipeline_record
    from benchmarks.memory import memory_records
    from benchmarks.real_size import real_size_records
    from medxai.attribution.registry import METHODS

    device = device_name()
    suffix = "-quick" if settings.quick else ""
    checkpoint = open_run(out, suffix, quick=settings.quick, device=device, resume=resume)
    method_groups(settings, checkpoint, device=device)
    checkpoint.group("radiomics", lambda: radiomics_rows(quick=settings.quick, out=out, repeats=settings.repeats))
    for memory_size in settings.memory_sizes:
        checkpoint.group(f"memory {settings.method_model} {memory_size}^3",
                         lambda: memory_records(list(METHODS), arch=settings.method_model, size=memory_size, device=device))
    checkpoint.group("end to end", lambda: [
        demo_record(settings.demo_args, repeats=settings.end_to_end_repeats, device=device),
        pipeline_record(settings.pipeline_cases, repeats=settings.end_to_end_repeats, device=device)])
    if not settings.quick:
        checkpoint.group(REAL_SIZE_GROUP, lambda: real_size_records(device=device))
    return write_run(checkpoint, out, suffix)


def run_real_size(out: Path, *, resume: bool = False) -> tuple[Path, Path]:
    """Only the real-size group: every method on a 512x512x300 CT-like volume through the demo's model class."""
    from benchmarks.real_size import real_size_records

    device = device_name()
    suffix = "-real-size"
    checkpoint = open_run(out, suffix, quick=False, device=device, resume=resume)
    checkpoint.group(REAL_SIZE_GROUP, lambda: real_size_records(device=device))
    return write_run(checkpoint, out, suffix)


def method_groups(settings: Settings, checkpoint: Checkpoint, *, device: str) -> None:
    """The floors, then every method, its peers, ROI occlusion vs MONAI and the metrics on the method model.
    The method model's floor is measured in the session that runs the groups divided by it (a resumed run
    may be on another machine), so the ratios stay back to back."""
    from benchmarks.attribution_cost import attribution_records
    from benchmarks.floor import floor_records, make_model
    from benchmarks.metrics_cost import metric_records
    from benchmarks.peers import peer_records, roi_occlusion_record

    for arch, size, batches in settings.floor_cases:
        checkpoint.group(f"floor {arch} {size}^3", lambda: floor_records(arch, size, device=device, repeats=settings.repeats,
                                                                         batch_sizes=batches, warmup=settings.floor_warmup)[0])
    arch, size = settings.method_model, settings.method_size
    labels = [f"methods {arch} {size}^3", f"peers {arch} {size}^3", "occlusion ROI vs MONAI", f"metrics {arch} {size}^3"]
    if not any(checkpoint.pending(label) for label in labels):
        return
    network, inputs = make_model(arch, size, device=device)
    floor_rows, floor = floor_records(arch, size, device=device, repeats=settings.repeats, batch_sizes=settings.batch_sizes)
    if (arch, size) not in {(a, s) for a, s, _ in settings.floor_cases}:
        checkpoint.group(f"floor {arch} {size}^3 (session {checkpoint.session})", lambda: floor_rows)
    options = settings.method_options
    checkpoint.group(labels[0], lambda: attribution_records(network, inputs, floor, arch=arch, device=device,
                                                            repeats=settings.repeats, configured=options))
    checkpoint.group(labels[1], lambda: peer_records(network, inputs, arch=arch, device=device, repeats=settings.repeats,
                                                     configured=options))
    roi_size, window, stride = settings.roi_case
    checkpoint.group(labels[2], lambda: [roi_occlusion_record(make_model(arch, roi_size, device=device)[0], size=roi_size,
                                                              window=window, stride=stride, arch=arch, device=device,
                                                              repeats=settings.repeats)])
    checkpoint.group(labels[3], lambda: metric_records(network, inputs, floor, arch=arch, device=device,
                                                       repeats=settings.repeats))


def run_methods(arch: str, size: int, out: Path, *, resume: bool = False) -> tuple[Path, Path]:
    """Only the method groups (floor, methods, peers, ROI occlusion, metrics) on ``arch`` at ``size``^3."""
    device = device_name()
    suffix = f"-methods-{arch}-{size}"
    checkpoint = open_run(out, suffix, quick=False, device=device, resume=resume)
    method_groups(Settings.methods_at(arch, size), checkpoint, device=device)
    return write_run(checkpoint, out, suffix)


def run_floors(arch: str, sizes: tuple[int, ...], out: Path, *, batch_sizes: tuple[int, ...] = (1, 2, 4),
               resume: bool = False) -> tuple[Path, Path]:
    """Only the pass floors (forward, forward+backward at each batch size) of ``arch`` at ``sizes``^3."""
    from benchmarks.floor import floor_records

    device = device_name()
    suffix = f"-floor-{arch}"
    checkpoint = open_run(out, suffix, quick=False, device=device, resume=resume)
    for size in sizes:
        checkpoint.group(f"floor {arch} {size}^3",
                         lambda: floor_records(arch, size, device=device, repeats=3, batch_sizes=batch_sizes)[0])
    return write_run(checkpoint, out, suffix)


def run_memory(settings: Settings, out: Path, *, arch: str, sizes: tuple[int, ...], resume: bool = False) -> tuple[Path, Path]:
    """Only the peak-memory group (every method, automatic batching) at ``sizes`` for ``arch``."""
    from benchmarks.memory import memory_records
    from medxai.attribution.registry import METHODS

    device = device_name()
    suffix = f"-memory-{arch}"
    checkpoint = open_run(out, suffix, quick=settings.quick, device=device, resume=resume)
    for size in sizes:
        checkpoint.group(f"memory {arch} {size}^3", lambda: memory_records(list(METHODS), arch=arch, size=size, device=device))
    return write_run(checkpoint, out, suffix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the few-minute version (make bench-quick)")
    parser.add_argument("--memory-only", metavar="SIZES", default=None,
                        help="only the peak-memory group at these comma-separated sizes (e.g. 128,256)")
    parser.add_argument("--methods-only", metavar="ARCH:SIZE", default=None,
                        help="only the floor, method, peer and metric groups on that model and size (e.g. resnet18:64)")
    parser.add_argument("--floor-only", metavar="ARCH:SIZES", default=None,
                        help="only the pass floors of that model at these sizes, batch 1, 2, 4 (e.g. resnet18:96,128)")
    parser.add_argument("--real-size-only", action="store_true",
                        help="only the real-size row: every method on a 512x512x300 CT-like volume (demo's model class)")
    parser.add_argument("--arch", default=None, help="with --memory-only: the model (default: the run's method model)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--resume", action="store_true",
                        help="go on from this host's partial file of the same kind of run, keeping the groups it finished")
    args = parser.parse_args(argv)
    settings = Settings.make(quick=args.quick)
    if args.real_size_only:
        json_path, md_path = run_real_size(args.out, resume=args.resume)
    elif args.methods_only:
        arch, _, size = args.methods_only.partition(":")
        json_path, md_path = run_methods(arch, int(size), args.out, resume=args.resume)
    elif args.floor_only:
        arch, _, sizes = args.floor_only.partition(":")
        json_path, md_path = run_floors(arch, tuple(int(part) for part in sizes.split(",")), args.out, resume=args.resume)
    elif args.memory_only:
        sizes = tuple(int(part) for part in args.memory_only.split(","))
        json_path, md_path = run_memory(settings, args.out, arch=args.arch or settings.method_model, sizes=sizes,
                                         resume=args.resume)
    else:
        json_path, md_path = run(settings, args.out, resume=args.resume)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
