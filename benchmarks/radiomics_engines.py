"""flash-radiomics 1.0.0 vs PyRadiomics 3.0.1: feature parity and speed (evaluation of an optional engine).

Parity: the 5 PyRadiomics reference cases (``$MEDXAI_TEST_DATA/pyradiomics``) x the project's parameter files
(``ct`` and ``mr`` presets and ``benchmarks/radiomics_noresample.yaml``), both engines on the same
in-memory SimpleITK image and mask. Every feature PyRadiomics returns is compared with flash's
(relative difference ``|a - b| / max(|a|, |b|)``), for flash as shipped, with ``glcmPythonMCC: true``, and
with both that and the mechanical kurtosis conversion (flash reports excess kurtosis: +3). A few perturbed
settings (distances, LoG/Wavelet, binCount, gldm_a, force2D, resegmentation) on ``lung1`` check that flash honours them.

Speed: lesion + 6 EDT shells (2-12 mm, ``medxai.radiomics.shells.peritumoral_regions``) of ``lung1``, the
7 masks in memory, both engines on the same masks and parameters, timed alternately in one process
(PyRadiomics; flash with ``glcmPythonMCC``, the setting parity needs; the same without the HDF5 file its
``execute`` always writes; flash as shipped; repeated); then the lesion of each of the 5 cases with its
modality preset. One thread everywhere (``num_threads=1`` for flash); a fresh extractor for every timed
pass, so flash's preprocessing cache (keyed on ``id()`` of the SimpleITK objects) never carries over.

Traps recorded too: that cache returns an earlier region's features for later regions when one extractor
gets a new mask object per region and the previous one was freed (CPython reuses the address); and flash's
discretization cache, keyed on numpy buffer addresses, gives filtered images (Wavelet) stale grey levels.

Not part of medxai and not imported by it or by the tests: flash-radiomics lives in its own environment::

    python3 -m venv /tmp/flashenv
    /tmp/flashenv/bin/pip install -c CONSTRAINTS numpy h5py SimpleITK pykwalify PyWavelets scipy \\
        scikit-image scikit-learn trimesh pyyaml nibabel versioneer setuptools wheel
    /tmp/flashenv/bin/pip install -c CONSTRAINTS --no-deps --only-binary=:all: flash-radiomics==1.0.0
    /tmp/flashenv/bin/pip install -c CONSTRAINTS --no-build-isolation pyradiomics==3.0.1
    OMP_NUM_THREADS=1 taskset -c 0 /tmp/flashenv/bin/python benchmarks/radiomics_engines.py

(CONSTRAINTS pins numpy, SimpleITK, scipy, ... to the versions in the project's ``.venv``.) Writes
``benchmarks/results/radiomics_engines.json``.
"""
from __future__ import annotations

import argparse
import copy
import importlib.metadata as md
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # medxai's readers and shells, from the source tree
CASES = ("brain1", "brain2", "breast1", "lung1", "lung2")
MODALITY_PRESET = {"brain1": "mr", "brain2": "mr", "breast1": "mr", "lung1": "ct", "lung2": "ct"}
PARAMS = {
    "ct": ROOT / "medxai" / "radiomics" / "params" / "ct.yaml",
    "mr": ROOT / "medxai" / "radiomics" / "params" / "mr.yaml",
    "noresample": ROOT / "benchmarks" / "radiomics_noresample.yaml",
}
FLASH_VARIANTS = {"as_shipped": {}, "glcmPythonMCC": {"glcmPythonMCC": True}}
PROBES = {  # perturbations of radiomics_noresample.yaml on lung1: does flash honour the setting?
    "distances_2": {"distances": [2]},
    "imageType_LoG": {"imageType": {"LoG": {"sigma": [1.0, 3.0]}}},
    "imageType_Wavelet": {"imageType": {"Wavelet": {}}},
    "binCount_16": {"binWidth": None, "binCount": 16},
    "gldm_a_1": {"gldm_a": 1},
    "force2D": {"force2D": True},
    "resegment_shape": {"resegmentRange": [-500, 400], "resegmentShape": True},
}
TOLERANCE = 1e-5
DISTANCES_MM = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0)


def _quiet() -> None:
    import flash_radiomics
    import radiomics

    for module in (radiomics, flash_radiomics):
        module.handler.setLevel(logging.CRITICAL + 1)
        module.logger.setLevel(logging.ERROR)


def pyradiomics_extractor(settings: dict):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    extractor = RadiomicsFeatureExtractor(copy.deepcopy(settings))
    extractor.settings["additionalInfo"] = False  # as medxai.radiomics.params.load_extractor
    return extractor


def flash_extractor(settings: dict, h5_dir: str, **extra):
    from flash_radiomics.featureextractor import RadiomicsFeatureExtractor

    return RadiomicsFeatureExtractor(copy.deepcopy(settings), backend="cpu", num_threads=1, additionalInfo=False,
                                     hdf5OutputDirectory=h5_dir, **extra)


def flash_no_hdf5(extractor, image, mask):
    """flash's compute alone: its execute() minus the HDF5 file it always writes (image, mask, features)."""
    return extractor.extract_from_preprocessed(extractor.preprocess_case(image, mask, label=1, label_channel=0))


def _settings(name: str, imageType: dict | None = None, **override) -> dict:
    settings = yaml.safe_load(PARAMS[name].read_text())
    if imageType is not None:
        settings["imageType"] = imageType
    for key, value in override.items():
        if value is None:
            settings["setting"].pop(key, None)
        else:
            settings["setting"][key] = value
    return settings


def _rel(a: float, b: float) -> float:
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0.0 else abs(a - b) / scale


def compare(ref: dict, other: dict, kurtosis_plus_3: bool = False) -> dict:
    """Per feature class max relative difference, features missing on either side, features over TOLERANCE."""
    ref = {k: float(v) for k, v in ref.items() if not k.startswith("diagnostics_")}
    other = {k: float(v) for k, v in other.items() if not k.startswith("diagnostics_")}
    if kurtosis_plus_3:
        other = {k: v + 3.0 if k.endswith("_firstorder_Kurtosis") else v for k, v in other.items()}
    per_class: dict[str, float] = {}
    over = []
    for key, a in ref.items():
        if key not in other:
            continue
        cls = key.rsplit("_", 1)[0]  # <imageType>_<class>
        r = _rel(a, other[key])
        per_class[cls] = max(per_class.get(cls, 0.0), r)
        if r > TOLERANCE:
            over.append({"feature": key, "pyradiomics": a, "flash": other[key], "rel": r})
    return {
        "n_pyradiomics": len(ref),
        "n_shared": sum(k in other for k in ref),
        "missing_in_flash": sorted(k for k in ref if k not in other),
        "extra_in_flash": sorted(k for k in other if k not in ref),
        "max_rel_by_class": per_class,
        "over_tolerance": sorted(over, key=lambda o: -o["rel"]),
    }


def _case(data: Path, case: str):
    folder = data / "pyradiomics"
    return sitk.ReadImage(str(folder / f"{case}_image.nrrd")), sitk.ReadImage(str(folder / f"{case}_label.nrrd"))


def _verdict_rows(rows: dict) -> dict:
    final = [r["glcmPythonMCC+kurtosis3"] for r in rows.values()]
    worst = sorted((o for r in final for o in r["over_tolerance"]), key=lambda o: -o["rel"])
    return {
        "pass": not worst and not any(r["missing_in_flash"] for r in final),
        "n_configurations": len(final),
        "n_configurations_failing": sum(bool(r["over_tolerance"] or r["missing_in_flash"]) for r in final),
        "features_failing": sorted({o["feature"] for o in worst}),
    }


def parity(data: Path, h5_dir: str) -> dict:
    rows = {}
    configs = [(case, name, name, {}) for case in CASES for name in PARAMS]
    configs += [("lung1", "noresample", f"probe_{probe}", override) for probe, override in PROBES.items()]
    for case, name, label, override in configs:
        image, mask = _case(data, case)
        settings = _settings(name, **override)
        try:
            ref = pyradiomics_extractor(settings).execute(image, mask, label=1)
        except (ValueError, RuntimeError) as error:  # a region PyRadiomics refuses: does flash too?
            try:
                flash_extractor(settings, h5_dir).execute(image, mask, label=1)
                flash = "returned features"
            except (ValueError, RuntimeError) as flash_error:
                flash = f"{type(flash_error).__name__}: {flash_error}"
            rows[f"{case}/{label}"] = {"pyradiomics_error": str(error), "flash": flash}
            continue
        out = {}
        for variant, extra in FLASH_VARIANTS.items():
            try:
                result = flash_extractor(settings, h5_dir, **extra).execute(image, mask, label=1)
            except (ValueError, RuntimeError) as error:
                out[variant] = {"flash_error": f"{type(error).__name__}: {error}"}
                continue
            out[variant] = compare(ref, result)
            if variant == "glcmPythonMCC":
                out["glcmPythonMCC+kurtosis3"] = compare(ref, result, kurtosis_plus_3=True)
        rows[f"{case}/{label}"] = out
        worst = out.get("glcmPythonMCC+kurtosis3", {}).get("over_tolerance", [])
        print(f"parity {case}/{label}: {len(worst)} features over {TOLERANCE:g} after conversions", flush=True)
    presets = {k: v for k, v in rows.items() if "/probe_" not in k and "pyradiomics_error" not in v}
    probes = {k: v for k, v in rows.items() if "/probe_" in k and "pyradiomics_error" not in v}
    return {"tolerance_rel": TOLERANCE, "verdict_presets": _verdict_rows(presets),
            "verdict_probes": _verdict_rows(probes), "rows": rows}


def cache_trap(data: Path, h5_dir: str) -> dict:
    """flash caches preprocessing by id() of the image and mask objects: one extractor fed a new mask object
    per region, the previous one freed (CPython reuses the address), returns the first region's features."""
    keys, masks, _ = shell_masks(data, "lung1")
    image, _ = _case(data, "lung1")
    arrays = [sitk.GetArrayFromImage(m) for m in masks]

    def mask(i):
        m = sitk.GetImageFromArray(arrays[i])
        m.CopyInformation(image)
        return m

    shared = flash_extractor(_settings("noresample"), h5_dir)
    one = [shared.execute(image, mask(i), label=1)["original_shape_VoxelVolume"] for i in range(len(keys))]
    fresh = [flash_extractor(_settings("noresample"), h5_dir).execute(image, mask(i), label=1)["original_shape_VoxelVolume"]
             for i in range(len(keys))]
    ref = pyradiomics_extractor(_settings("noresample"))
    pyr = [ref.execute(image, mask(i), label=1)["original_shape_VoxelVolume"] for i in range(len(keys))]
    return {"regions": keys, "voxel_volume_one_flash_extractor": one, "voxel_volume_fresh_flash_extractor": fresh,
            "voxel_volume_one_pyradiomics_extractor": pyr, "stale_results": one != fresh}


def discretization_trap(data: Path, h5_dir: str) -> dict:
    """flash caches each image type's grey-level discretization by the address of its numpy buffer: a later
    filtered image allocated where a freed one was gets the stale bins. Wavelet on lung1 with that cache
    emptied before every use (a monkeypatch of flash's private ``_get_discretized_buffer``) vs as it is."""
    from flash_radiomics.featureextractor import RadiomicsFeatureExtractor

    image, mask = _case(data, "lung1")
    settings = _settings("noresample", imageType={"Wavelet": {}})
    ref = pyradiomics_extractor(settings).execute(image, mask, label=1)
    out = {}
    original = RadiomicsFeatureExtractor._get_discretized_buffer
    for name in ("cache_as_shipped", "cache_emptied"):
        result = flash_extractor(settings, h5_dir, glcmPythonMCC=True).execute(image, mask, label=1)
        c = compare(ref, result, kurtosis_plus_3=True)
        out[name] = {"n_over_tolerance": len(c["over_tolerance"]), "max_rel": max(c["max_rel_by_class"].values()),
                     "image_types_over": sorted({o["feature"].split("_")[0] for o in c["over_tolerance"]})}

        def emptied(self, *args, **kwargs):
            self._discretization_cache = {}
            return original(self, *args, **kwargs)

        RadiomicsFeatureExtractor._get_discretized_buffer = emptied
    RadiomicsFeatureExtractor._get_discretized_buffer = original
    return out


def _load() -> float:
    return os.getloadavg()[0]


def _timed(arms: dict, repeats: int) -> dict:
    """Run the arms alternately (A, B, C, A, B, C, ...); each arm returns its own elapsed seconds."""
    times = {name: [] for name in arms}
    loads = []
    for _ in range(repeats):
        for name, arm in arms.items():
            times[name].append(arm())
        loads.append(_load())
    med = {name: statistics.median(t) for name, t in times.items()}
    ratios = [p / f for p, f in zip(times["pyradiomics"], times["flash"])]
    return {
        "times_s": times,
        "median_s": med,
        "speedup_flash_vs_pyradiomics_median": med["pyradiomics"] / med["flash"],
        "speedup_per_repeat": {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)},
        "speedup_no_hdf5_vs_pyradiomics_median": med["pyradiomics"] / med["flash_no_hdf5"],
        "speedup_as_shipped_vs_pyradiomics_median": med["pyradiomics"] / med["flash_as_shipped"],
        "load_average_1min_after_each_repeat": loads,
    }


def _arms(image, masks, settings: dict, h5_dir: str, results: dict) -> dict:
    def pyr():
        extractor = pyradiomics_extractor(settings)
        start = time.perf_counter()
        results["pyradiomics"] = [extractor.execute(image, m, label=1) for m in masks]
        return time.perf_counter() - start

    def flash():
        extractor = flash_extractor(settings, h5_dir, glcmPythonMCC=True)
        start = time.perf_counter()
        results["flash"] = [extractor.execute(image, m, label=1, case_id="bench", roi_id=f"r{i}")
                            for i, m in enumerate(masks)]
        return time.perf_counter() - start

    def flash_bare():
        extractor = flash_extractor(settings, h5_dir, glcmPythonMCC=True)
        start = time.perf_counter()
        for m in masks:
            flash_no_hdf5(extractor, image, m)
        return time.perf_counter() - start

    def flash_as_shipped():
        extractor = flash_extractor(settings, h5_dir)
        start = time.perf_counter()
        for i, m in enumerate(masks):
            extractor.execute(image, m, label=1, case_id="bench", roi_id=f"r{i}")
        return time.perf_counter() - start

    return {"pyradiomics": pyr, "flash": flash, "flash_no_hdf5": flash_bare, "flash_as_shipped": flash_as_shipped}


def shell_masks(data: Path, case: str):
    from medxai.io.itk import volume_to_sitk
    from medxai.io.readers import read_mask, read_volume
    from medxai.radiomics.shells import peritumoral_regions

    folder = data / "pyradiomics"
    volume = read_volume(folder / f"{case}_image.nrrd")
    lesion = read_mask(folder / f"{case}_label.nrrd", volume)
    regions = [r for r in peritumoral_regions(lesion, distances_mm=DISTANCES_MM) if r.name in ("lesion", "shell")]
    return ([r.key for r in regions], [volume_to_sitk(volume.with_data(r.on_grid().astype("uint8"))) for r in regions],
            volume.shape)


def speed(data: Path, h5_dir: str, repeats: int, case_repeats: int) -> dict:
    out = {}
    keys, masks, shape = shell_masks(data, "lung1")
    image, _ = _case(data, "lung1")
    for name in ("ct", "noresample"):
        settings, results = _settings(name), {}
        arms = _arms(image, masks, settings, h5_dir, results)
        arms["flash"]()  # warm-up (imports, native library, file cache), not timed
        record = _timed(arms, repeats)
        record["regions"] = keys
        record["size"] = f"{shape[0]}x{shape[1]}x{shape[2]}, 7 regions"
        record["parity_on_shells_glcmPythonMCC+kurtosis3"] = {
            key: compare(a, b, kurtosis_plus_3=True) for key, a, b in zip(keys, results["pyradiomics"], results["flash"])}
        out[f"lung1_7_regions_{name}"] = record
        print(f"speed lung1 7 regions {name}: {record['median_s']}", flush=True)
    for case in CASES:
        image, mask = _case(data, case)
        name = MODALITY_PRESET[case]
        record = _timed(_arms(image, [mask], _settings(name), h5_dir, {}), case_repeats)
        record["params"] = name
        record["size"] = "x".join(str(n) for n in image.GetSize())
        out[f"{case}_lesion_{name}"] = record
        print(f"speed {case} {name}: {record['median_s']}", flush=True)
    return out


def environment() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    return {
        "versions": {p: md.version(p) for p in ("flash-radiomics", "pyradiomics", "numpy", "SimpleITK", "scipy",
                                               "PyWavelets", "h5py")} | {"python": platform.python_version()},
        "hardware": {"cpu": cpu, "cores": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)),
                     "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "flash_backend": "cpu, num_threads=1"},
    }


def _clean(value):
    """Strict JSON: non-finite floats (a NaN on one side only gives an infinite difference) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MEDXAI_TEST_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per engine on the 7 lung1 regions")
    parser.add_argument("--case-repeats", type=int, default=3, help="timed passes per engine per case")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--traps-only", action="store_true", help="recompute only the trap entries of --out")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "radiomics_engines.json")
    args = parser.parse_args()
    _quiet()
    if args.traps_only:
        record = json.loads(args.out.read_text())
        with tempfile.TemporaryDirectory() as h5_dir:
            record["trap_preprocess_cache_id_reuse"] = cache_trap(args.data, h5_dir)
            record["trap_discretization_cache_address_reuse"] = discretization_trap(args.data, h5_dir)
        args.out.write_text(json.dumps(_clean(record), indent=1) + "\n")
        return
    record = {"name": "radiomics_engines_flash_vs_pyradiomics", **environment(),
              "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as h5_dir:
        record["parity"] = parity(args.data, h5_dir)
        record["trap_preprocess_cache_id_reuse"] = cache_trap(args.data, h5_dir)
        record["trap_discretization_cache_address_reuse"] = discretization_trap(args.data, h5_dir)
        if not args.skip_speed:
            record["speed"] = speed(args.data, h5_dir, args.repeats, args.case_repeats)
    record["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_clean(record), indent=1) + "\n")
    print(json.dumps({"verdict_presets": record["parity"]["verdict_presets"],
                      "verdict_probes": record["parity"]["verdict_probes"]}, indent=1))


if __name__ == "__main__":
    main()
