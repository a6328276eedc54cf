"""Radiomics throughput: medxai's 7-region extraction (lesion + 6 shells) vs PyRadiomics alone on them.

medxai: read the scan and the lesion once, build the shells (EDT), extract all 7 regions from the one
loaded image. Peer: PyRadiomics' own extractor run on the same 7 region masks as files (what its batch
mode does: each region reads the image again), and PyRadiomics with image and masks already in memory
(its compute alone: the floor of what PyRadiomics does). Same parameter file for all. Then the cohort
throughput of ``medxai radiomics extract MANIFEST --workers N`` over the PyRadiomics reference cases with 1 and
2 worker processes (cases per minute, scaling efficiency). Writes ``benchmarks/results/radiomics_speed.json``.
Run: ``.venv/bin/python benchmarks/radiomics_speed.py [--params ct] [--workers 1 2]``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DISTANCES = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0)
COHORT = ("brain1", "brain2", "breast1", "lung1", "lung2")  # PyRadiomics' reference cases


def _ours(image_path: Path, mask_path: Path, params: str) -> float:
    from medxai.io.readers import read_mask, read_volume
    from medxai.radiomics.extract import extract_features
    from medxai.radiomics.shells import peritumoral_regions

    start = time.perf_counter()
    image = read_volume(image_path)
    lesion = read_mask(mask_path, image)
    regions = [r for r in peritumoral_regions(lesion, distances_mm=DISTANCES) if r.name in ("lesion", "shell")]
    rows = extract_features(image, regions, case_id="bench", params=params)
    assert len(rows) == 7
    return time.perf_counter() - start


def _peer(image_path: Path, masks: list[Path], params: str) -> float:
    from medxai.radiomics.params import load_extractor

    extractor = load_extractor(params)  # PyRadiomics' RadiomicsFeatureExtractor on the same parameter file
    start = time.perf_counter()
    for mask in masks:
        extractor.execute(str(image_path), str(mask), label=1)
    return time.perf_counter() - start


def _peer_in_memory(image_path: Path, masks: list[Path], params: str) -> float:
    """PyRadiomics with the image and the region masks already loaded (its compute alone, no file reads)."""
    import SimpleITK as sitk

    from medxai.radiomics.params import load_extractor

    extractor = load_extractor(params)
    image = sitk.ReadImage(str(image_path))
    loaded = [sitk.ReadImage(str(mask)) for mask in masks]
    start = time.perf_counter()
    for mask in loaded:
        extractor.execute(image, mask, label=1)
    return time.perf_counter() - start


def _region_files(image_path: Path, mask_path: Path, folder: Path) -> list[Path]:
    from medxai.io.itk import write_itk
    from medxai.io.readers import read_mask, read_volume
    from medxai.radiomics.shells import peritumoral_regions

    image = read_volume(image_path)
    lesion = read_mask(mask_path, image)
    files = []
    for region in peritumoral_regions(lesion, distances_mm=DISTANCES):
        if region.name in ("lesion", "shell"):
            path = folder / f"{region.key}.nrrd"
            write_itk(image.with_data(region.on_grid().astype("uint8")), path)
            files.append(path)
    return files


def _cohort_seconds(data: Path, params: str, workers: int, folder: Path, copies: int) -> float:
    """Wall time of one ``medxai radiomics extract`` over ``copies`` copies of the reference cases (lesion + 6
    shells each; copies even out the cases' sizes, so the figure measures parallelism, not one long case)."""
    manifest = folder / "cohort.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("case_id", "image", "mask"))
        source = data / "pyradiomics"
        writer.writerows((f"{case}_{k}", source / f"{case}_image.nrrd", source / f"{case}_label.nrrd")
                         for k in range(copies) for case in COHORT)
    out = folder / f"features_{workers}.csv"
    command = [sys.executable, "-m", "medxai", "radiomics", "extract", str(manifest), "-o", str(out),
               "--params", params, "--workers", str(workers), "--work-dir", str(folder / f"parts_{workers}")]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def cohort_records(data: Path, params: str, workers: tuple[int, ...], copies: int) -> list[dict]:
    """One record per worker count (one run each): cases per minute, and against the first count (1 worker)
    the time ratio and the scaling efficiency (the speed-up over it divided by the ratio of workers)."""
    seconds = {}
    for n in workers:
        with tempfile.TemporaryDirectory() as folder:
            seconds[n] = _cohort_seconds(data, params, n, Path(folder), copies)
    first, cases = workers[0], copies * len(COHORT)
    records = []
    for n, wall in seconds.items():
        record = {
            "name": f"radiomics_cohort_{cases}_cases_{Path(params).stem}_{n}_workers",
            "method": f"medxai radiomics extract MANIFEST --workers {n} (lesion + 6 shells per case, parallel over cases)",
            "size": f"{copies} x the {len(COHORT)} PyRadiomics reference cases",
            "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
            "median_s": wall,
            "cases_per_minute": round(60 * cases / wall, 2),
            "params": Path(params).name if Path(params).suffix else f"{params} preset",
            "repeats": 1,
            "load_average_1min": os.getloadavg()[0],
        }
        if n != first:
            record.update(peer=f"the same with --workers {first}", peer_median_s=seconds[first],
                          ratio_to_peer=wall / seconds[first], scaling_efficiency=seconds[first] * first / (wall * n))
        records.append(record)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MEDXAI_TEST_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--case", default="lung1")
    parser.add_argument("--params", default="ct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts for the cohort run")
    parser.add_argument("--copies", type=int, default=4, help="copies of the reference cases in the cohort run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "radiomics_speed.json")
    args = parser.parse_args()
    image_path = args.data / "pyradiomics" / f"{args.case}_image.nrrd"
    mask_path = args.data / "pyradiomics" / f"{args.case}_label.nrrd"
    with tempfile.TemporaryDirectory() as folder:
        masks = _region_files(image_path, mask_path, Path(folder))
        _ours(image_path, mask_path, args.params)  # warm-up: imports, file cache
        ours, peer, in_memory = [], [], []
        for _ in range(args.repeats):
            ours.append(_ours(image_path, mask_path, args.params))
            peer.append(_peer(image_path, masks, args.params))
            in_memory.append(_peer_in_memory(image_path, masks, args.params))
    from medxai.io.readers import read_volume

    shape = read_volume(image_path).shape
    record = {
        "name": f"radiomics_7_regions_{args.case}_{Path(args.params).stem}",
        "method": "medxai radiomics (lesion + 6 EDT shells, one image load)",
        "size": f"{shape[0]}x{shape[1]}x{shape[2]}, 7 regions",
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "median_s": statistics.median(ours),
        "peer": "PyRadiomics 3.0.1 RadiomicsFeatureExtractor.execute on the 7 region files",
        "peer_median_s": statistics.median(peer),
        "ratio_to_peer": statistics.median(ours) / statistics.median(peer),
        "peer_in_memory_median_s": statistics.median(in_memory),
        "ratio_to_peer_in_memory": statistics.median(ours) / statistics.median(in_memory),
        "params": Path(args.params).name if Path(args.params).suffix else f"{args.params} preset",
        "repeats": args.repeats,
        "load_average_1min": os.getloadavg()[0],
    }
    fresh = [record, *cohort_records(args.data, args.params, tuple(args.workers), args.copies)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    names = {r["name"] for r in fresh}
    records = [r for r in (json.loads(args.out.read_text()) if args.out.is_file() else []) if r.get("name") not in names]
    args.out.write_text(json.dumps(records + fresh, indent=2) + "\n")
    print(json.dumps(fresh, indent=2))


if __name__ == "__main__":
    main()
