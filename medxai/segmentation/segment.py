"""``medxai segment``: weakly-supervised masks cut from class heatmaps, on each scan's own grid.

Chatterjee et al., "Weakly-supervised segmentation using inherently-explainable classification models and
their application to brain tumour classification": the heatmap of the predicted class is thresholded
(top multi-Otsu threshold minus an offset, the offset chosen on validation cases by median Dice).

Geometry: the class map is computed on the model grid, mapped to the native grid with *linear*
interpolation, and thresholded there. The level itself is computed on the model-grid map (what the
network produced, independent of how much background a scan's field of view adds), then applied to the
interpolated native map, so the written mask is exactly ``heatmap > level`` (before optional clean-up)
voxel for voxel and its boundary follows the interpolated iso-surface. Thresholding on the model grid and
resampling the mask with nearest neighbour instead would give staircase boundaries one model voxel
coarse (worse Dice/HD95 on any scan finer than the model grid) and a mask that disagrees with its heatmap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from medxai import __version__
from medxai.errors import ConfigError, InvalidInputError, one_line
from medxai.io.atomic import output_folder, write_text_atomic
from medxai.io.naming import check_case_folder, input_label, record_case_input, unique_case_ids
from medxai.segmentation.heatmaps import OWN, ClassMap
from medxai.segmentation.overlap import dice, overlap_scores, voxel_volume_ml
from medxai.segmentation.postprocess import clean_mask
from medxai.segmentation.reporting import case_record, scores_csv, summarise
from medxai.segmentation.threshold import ThresholdRule, binarize, threshold_level
from medxai.volume import Step, Volume

Progress = Callable[[str, int, int], None]
# The paper's sweep: offsets 0.4 to 1.0 in steps of 0.1.
PAPER_SWEEP = tuple(ThresholdRule("multiotsu-offset", round(0.4 + 0.1 * i, 1)) for i in range(7))


@dataclass(frozen=True)
class SegmentInput:
    """One case: its channel files (model order), an optional reference mask and label."""

    case_id: str
    images: tuple[Path, ...]
    mask: Path | None = None
    label: str | None = None


@dataclass(frozen=True)
class SegmentSettings:
    """How a heatmap becomes a mask (see :mod:`medxai.segmentation.threshold`)."""

    rule: ThresholdRule = ThresholdRule("multiotsu-offset", 0.5)
    method: str = OWN
    target: str = "predicted"
    negative_class: str | None = "normal"
    keep_largest: bool = False
    fill_holes: bool = False
    seed: int = 0
    refine: str | None = None  # a box segmenter re-drawing the margin from the image (medxai.segmentation.refine)
    refine_margin_mm: float = 3.0


def collect_inputs(scans: Sequence[str | Path], *, masks: Sequence[str | Path] = ()) -> list[SegmentInput]:
    """Cases from SCAN arguments: a scan (``a.nii.gz;b.nii.gz`` for several channels) or a ``labels.csv``
    manifest (``case_id,image,mask,label``, or its folder). ``masks`` pair with the scans in order."""
    from medxai.models.dataset import read_labels, split_channels

    if masks and len(masks) != len(scans):
        raise ConfigError(f"{len(masks)} --mask for {len(scans)} scans: give one reference mask per scan, in order")
    cases: list[SegmentInput] = []
    fixed: list[str | None] = []  # a manifest's case ids are kept; a scan's id derives from its path
    for position, scan in enumerate(scans):
        text = str(scan)
        if text.lower().endswith(".csv") or (Path(text).is_dir() and (Path(text) / "labels.csv").is_file()):
            if masks:
                raise ConfigError(f"{text}: a manifest lists its own masks; --mask goes with single scans only")
            listed = read_labels(text).cases
            cases += [SegmentInput(c.case_id, c.images, c.mask, c.label) for c in listed]
            fixed += [c.case_id for c in listed]
            continue
        images = split_channels(text, Path())
        if not images:
            raise InvalidInputError("empty scan argument", path=text)
        cases.append(SegmentInput("", images, Path(masks[position]) if masks else None))
        fixed.append(None)
    # A missing file is not checked here: reading it fails that case alone (exit 4 for one scan, 3 in a batch).
    ids = unique_case_ids([case.images[0] for case in cases], fixed=fixed)
    return [replace(case, case_id=case_id) for case, case_id in zip(cases, ids)]


def cut_mask(class_map: ClassMap, *, rule: ThresholdRule, keep_largest: bool, fill: bool, refine: str | None = None,
             image: Volume | None = None, refine_margin_mm: float = 3.0, seed: int = 0) -> tuple[Volume, float]:
    """The mask of one class map and its level (map units; ``inf`` for a forced-empty mask). With ``refine``
    (a box segmenter) the mask is re-drawn from ``image`` (the scan's first channel) around the map's peak;
    what was done is in the mask's ``metadata["refine"]``."""
    level = math.inf if class_map.empty_reason else threshold_level(class_map.model_map, rule)
    binary = clean_mask(binarize(class_map.heatmap.data, level), keep_largest=keep_largest, fill=fill)
    step = Step("threshold", {"rule": str(rule), "level": level, "largest_component": keep_largest, "fill_holes": fill})
    mask = class_map.heatmap.with_data(binary.astype(np.uint8), step=step)
    if refine is not None:
        from medxai.segmentation.refine import refine_mask

        if image is None:
            raise ConfigError("refinement needs the scan image")
        mask, info = refine_mask(mask, class_map.heatmap, image, method=refine, margin_mm=refine_margin_mm, seed=seed)
        mask = mask.with_data(mask.data, refine=info)
    return mask, level


def sweep_thresholds(
    pairs: Sequence[tuple[ClassMap, Volume]], candidates: Sequence[ThresholdRule], *, keep_largest: bool, fill: bool,
    refine: str | None = None, images: Sequence[Volume] | None = None, refine_margin_mm: float = 3.0,
) -> dict[str, Any]:
    """Chatterjee et al.'s selection: the candidate with the best median Dice over ``pairs`` (class map,
    reference mask); ties go to the better mean, then to the earlier candidate. Maps whose mask is
    forced empty (negative prediction) carry no information about the threshold and are left out. With
    ``refine``, ``images`` (one per pair) are the scans the refinement reads."""
    if refine is not None and (images is None or len(images) != len(pairs)):
        raise ConfigError("refinement in a sweep needs one image per case")
    indexed = [(i, m, truth) for i, (m, truth) in enumerate(pairs) if not m.empty_reason]
    usable = [(m, truth) for _, m, truth in indexed]
    if not usable:
        raise ConfigError("--sweep needs at least one case with a reference mask whose prediction is not negative")
    table = []
    for rule in candidates:
        dices = [dice(cut_mask(m, rule=rule, keep_largest=keep_largest, fill=fill, refine=refine,
                               image=images[i] if images is not None else None, refine_margin_mm=refine_margin_mm)[0].data,
                      truth.data)
                 for i, m, truth in indexed]
        table.append({"threshold": str(rule), "median_dice": float(np.median(dices)), "mean_dice": float(np.mean(dices))})
    best = max(range(len(table)), key=lambda i: (table[i]["median_dice"], table[i]["mean_dice"], -i))
    return {"chosen": table[best]["threshold"], "criterion": "median Dice", "n_cases": len(usable),
            "n_left_out_negative": len(pairs) - len(usable), "candidates": table}


def segment_scans(
    model_path: str | Path, cases: Sequence[SegmentInput], out_dir: str | Path, *, settings: SegmentSettings,
    sweep: Sequence[ThresholdRule] | None = None, device: str = "cpu", trust: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write ``OUT/<case_id>/{mask,heatmap}.nii.gz`` + ``segmentation.json`` for every case, and
    ``OUT/segmentation_scores.csv`` for cases with a reference mask. With ``sweep`` (candidate rules) the
    rule is chosen on the cases with reference masks first (``OUT/sweep.json``); their scores are then
    optimistic, so choose on validation cases and apply the choice to test cases in a second run.

    With one case, its error propagates (the CLI's exit 4). With several, a case whose scan or mask cannot be
    used is left out (no folder) and listed in the summary's ``failed`` as ``(case_id, reason)``."""
    from medxai.segmentation.refine import check_refiner

    if not cases:
        raise ConfigError("no scans to segment")
    check_refiner(settings.refine)
    out = Path(out_dir)
    sources = {case.case_id: input_label(case.images) for case in cases}
    for case in cases:  # before any work: never replace another input's folder
        check_case_folder(out / case.case_id, sources[case.case_id])
    with output_folder(out):  # writable, checked before the work; removed again if left empty
        return _segment_into(model_path, cases, out, sources, settings=settings, sweep=sweep, device=device,
                             trust=trust, progress=progress)


def _segment_into(
    model_path: str | Path, cases: Sequence[SegmentInput], out: Path, sources: dict[str, str], *,
    settings: SegmentSettings, sweep: Sequence[ThresholdRule] | None, device: str, trust: bool,
    progress: Progress | None,
) -> dict[str, Any]:
    """:func:`segment_scans` once the output folder is checked."""
    from medxai.io.nifti import write_nifti
    from medxai.io.readers import read_mask, read_volume
    from medxai.models.model_dir import load_model
    from medxai.segmentation.heatmaps import class_map

    model = load_model(model_path, device=device, trust=trust)
    if settings.target != "predicted" and settings.target not in model.classes:
        raise ConfigError(f"target class {settings.target!r} is not one of the model's classes ({', '.join(model.classes)})")
    negative = settings.negative_class if settings.negative_class in model.classes else None

    def compute(case: SegmentInput) -> tuple[ClassMap, Volume | None, Volume | None]:
        channels = [read_volume(path) for path in case.images]
        mapped = class_map(model, channels, method=settings.method, target=settings.target,
                           negative_class=negative, seed=settings.seed)
        truth = read_mask(case.mask, channels[0]) if case.mask else None
        return mapped, truth, channels[0]  # the image: the body a failed mask is measured against, and --refine's

    failed: list[tuple[str, str]] = []

    def compute_or_skip(case: SegmentInput) -> tuple[ClassMap, Volume | None, Volume | None] | None:
        try:
            return compute(case)
        except InvalidInputError as error:  # a bad scan or mask; a wrong option fails every case and stops the run
            if len(cases) == 1:
                raise
            failed.append((case.case_id, one_line(error)))
            return None

    refine = dict(refine=settings.refine, refine_margin_mm=settings.refine_margin_mm)

    rule, chosen_by, sweep_record = settings.rule, "option", None
    computed: dict[str, tuple[ClassMap, Volume | None, Volume | None] | None] = {}
    if sweep:
        for number, case in enumerate(cases, start=1):
            computed[case.case_id] = compute_or_skip(case)
            if progress:
                progress("Heatmaps", number, len(cases))
        scored = [done for done in computed.values() if done is not None and done[1] is not None]
        sweep_record = sweep_thresholds([(m, t) for m, t, _ in scored], sweep, keep_largest=settings.keep_largest,
                                        fill=settings.fill_holes, images=[image for _, _, image in scored] if settings.refine else None,
                                        **refine)
        rule = next(r for r in sweep if str(r) == sweep_record["chosen"])
        chosen_by = "sweep"
        write_text_atomic(out / "sweep.json", _json({**sweep_record, "method": settings.method,
                                                     "cases": [c.case_id for c in cases]}))
    rows: list[dict[str, Any]] = []
    unusable: list[tuple[str, str]] = []
    for number, case in enumerate(cases, start=1):
        done = computed.pop(case.case_id) if case.case_id in computed else compute_or_skip(case)
        if done is None:
            continue
        mapped, truth, image = done
        mask, level = cut_mask(mapped, rule=rule, keep_largest=settings.keep_largest, fill=settings.fill_holes,
                               image=image, seed=settings.seed, **refine)
        scores = overlap_scores(mask, truth) if truth is not None else None
        case_dir = out / case.case_id
        record_case_input(case_dir, case.case_id, sources[case.case_id])
        write_nifti(mapped.heatmap, case_dir / "heatmap.nii.gz", dtype=np.float32)
        write_nifti(mask, case_dir / "mask.nii.gz", dtype=np.uint8)
        record = case_record(case.case_id, model, mapped, mask, rule=rule, level=level, chosen_by=chosen_by,
                             settings=settings, scores=scores, voxel_ml=voxel_volume_ml(mask.affine), image=image)
        if record["status"] == "failed":
            unusable.append((case.case_id, record["reason"]))
        write_text_atomic(case_dir / "segmentation.json", _json({"case_id": case.case_id, "input": sources[case.case_id], **record}))
        if scores is not None:
            rows.append({"case_id": case.case_id, "method": settings.method, "threshold": str(rule),
                         "status": record["status"], "label": case.label or "", "predicted": mapped.predicted,
                         "target": mapped.target, **scores})
        if progress:
            progress("Segmenting", number, len(cases))
    if rows:
        write_text_atomic(out / "segmentation_scores.csv", scores_csv(rows))
    return summarise(out, cases=len(cases), rule=rule, chosen_by=chosen_by, rows=rows, sweep=sweep_record,
                     method=settings.method, version=__version__, failed=failed, unusable=unusable)


def _json(payload: dict[str, Any]) -> str:
    import json

    return json.dumps(payload, indent=2, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)
