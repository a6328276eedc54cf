"""Radiomics cases: what locates the lesion (mask, voxel box, mm box or seed), manifests, and regions."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from medxai.errors import ConfigError, InvalidInputError
from medxai.io.data_files import read_table
from medxai.io.naming import case_id_from_path, input_label, record_case_input, safe_case_id, unique_case_ids
from medxai.io.nifti import write_nifti
from medxai.io.readers import read_mask, read_volume
from medxai.radiomics.boxes import box_from_mm, box_from_seed, box_from_voxels, parse_numbers
from medxai.radiomics.segmenters import SEGMENTERS, segment_in_box
from medxai.radiomics.shells import DEFAULT_DISTANCES_MM, Region, check_distances, peritumoral_regions, shell_crop
from medxai.radiomics.tissue import TISSUES, tissue_mask
from medxai.volume import Volume

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseSpec:
    """One case: an image and exactly one way to find its lesion."""

    case_id: str
    image: Path
    mask: Path | None = None
    mask_label: str | None = None
    bbox: tuple[float, ...] | None = None
    bbox_mm: tuple[float, ...] | None = None
    seed_mm: tuple[float, ...] | None = None
    radius_mm: float | None = None
    tissue_mask: Path | None = None

    def __post_init__(self) -> None:
        given = [self.mask is not None, self.bbox is not None, self.bbox_mm is not None, self.seed_mm is not None]
        if sum(given) != 1:
            raise ConfigError(f"case {self.case_id}: give exactly one of mask, bbox, bbox-mm or seed point (+ radius)")
        if (self.seed_mm is None) != (self.radius_mm is None):
            raise ConfigError(f"case {self.case_id}: a seed point needs a radius and a radius needs a seed point")

    @property
    def source(self) -> str:
        """The image this case's outputs record (:func:`medxai.io.naming.input_label`)."""
        return input_label([self.image])

    @property
    def mask_source(self) -> str:
        """The mask file the outputs record ('' when the lesion comes from a box or seed point)."""
        return input_label([self.mask]) if self.mask is not None else ""


@dataclass(frozen=True)
class ExtractionOptions:
    """Settings shared by every case of a run (the fingerprint of finished cases includes them)."""

    params: str = "ct"
    distances_mm: tuple[float, ...] = DEFAULT_DISTANCES_MM
    box_dilation: bool = False
    segmenter: str = "otsu"
    tissue: str | None = None
    diagnostics: bool = False
    save_masks: Path | None = None
    seed: int = 0
    modality: str | None = None  # DICOM-style modality (CT, MR, PT...) the preset is checked against

    def __post_init__(self) -> None:
        check_distances(self.distances_mm)
        if self.segmenter not in SEGMENTERS:
            raise ConfigError(f"unknown segmenter {self.segmenter!r} (choose from {', '.join(SEGMENTERS)})")
        if self.tissue is not None and self.tissue not in TISSUES:
            raise ConfigError(f"unknown tissue {self.tissue!r} (choose from {', '.join(TISSUES)})")


_LABEL_MAPS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def _mask_label(mask: Path, label: str | None) -> int | str | None:
    """A label map's label is an integer value; a DICOM RTSTRUCT/SEG's may also be an ROI/segment name."""
    if label is None or not mask.name.lower().endswith(_LABEL_MAPS):
        return label
    try:
        return int(label)
    except ValueError:
        raise InvalidInputError(
            f"mask label {label!r} is not an integer label value (names only select RTSTRUCT/SEG ROIs)", path=mask) from None


def lesion_mask(case: CaseSpec, image: Volume, options: ExtractionOptions) -> Volume:
    """The case's lesion on the image grid: the given mask, or a segmentation inside its box."""
    if case.mask is not None:
        return read_mask(case.mask, image, label=_mask_label(case.mask, case.mask_label))
    if case.bbox is not None:
        box = box_from_voxels(case.bbox, image)
    elif case.bbox_mm is not None:
        box = box_from_mm(case.bbox_mm, image)
    else:
        assert case.seed_mm is not None and case.radius_mm is not None
        box = box_from_seed(case.seed_mm, case.radius_mm, image)
    return segment_in_box(image, box, method=options.segmenter, seed=options.seed, case_id=case.case_id)


def region_keys(options: ExtractionOptions) -> list[str]:
    """The ``<region>_<d>mm`` names every case's regions get, as :func:`peritumoral_regions` builds them."""
    keys = []
    for d in options.distances_mm:
        names = ("lesion",) if d == 0 else ("shell", "expanded") + (("box",) if options.box_dilation else ())
        keys += [f"{name}_{float(d):g}mm" for name in names]
    return keys


def saved_masks_complete(case_id: str, options: ExtractionOptions) -> bool:
    """Whether ``save_masks/<case_id>/`` holds every region's mask (always true without ``save_masks``)."""
    if options.save_masks is None:
        return True
    folder = Path(options.save_masks) / case_id
    return all((folder / f"{key}.nii.gz").is_file() for key in region_keys(options))


def save_regions(image: Volume, regions: list[Region], folder: Path) -> None:
    """``folder/<region>_<d>mm.nii.gz`` for every region, on the image grid with the image's affine."""
    for region in regions:
        write_nifti(image.with_data(region.on_grid().astype(np.uint8)), folder / f"{region.key}.nii.gz")


def lesion_columns(lesion: Volume) -> dict[str, object]:
    """How the lesion was found, for features.csv: ``mask``, or the box segmenter with the share of the box
    its lesion fills and whether that is most of the box (then the box, not a lesion, was measured)."""
    meta = lesion.metadata
    if "box_fraction" not in meta:
        return {"lesion_from": "mask", "lesion_box_fraction": "", "lesion_fills_box": ""}
    prior = "+box prior" if meta.get("box_prior") else ""
    return {"lesion_from": f"{meta.get('segmenter', 'box')}{prior}", "lesion_box_fraction": meta["box_fraction"],
            "lesion_fills_box": "true" if meta["fills_box"] else "false"}


def case_regions(case: CaseSpec, options: ExtractionOptions) -> tuple[Volume, list[Region], Volume]:
    """Read the case's image, find its lesion and build its regions (saved when ``save_masks`` is set);
    returns the image, the regions and the lesion mask."""
    image = read_volume(case.image)
    lesion = lesion_mask(case, image, options)
    tissue = None
    if case.tissue_mask is not None:
        tissue = read_mask(case.tissue_mask, image).data > 0
    elif options.tissue is not None:
        tissue = tissue_mask(image, tissue=options.tissue, within=shell_crop(lesion, max(options.distances_mm)))
    regions = peritumoral_regions(lesion, distances_mm=options.distances_mm, box_dilation=options.box_dilation, tissue=tissue)
    if options.save_masks is not None:
        folder = Path(options.save_masks) / case.case_id
        record_case_input(folder, case.case_id, case.source)
        save_regions(image, regions, folder)
    return image, regions, lesion


def _optional_path(value: str | None, base: Path) -> Path | None:
    return (base / value) if value and value.strip() else None


def read_manifest(path: str | Path) -> list[CaseSpec]:
    """Cases from a CSV with ``image`` and one of ``mask``, ``bbox`` (``i0 j0 k0 i1 j1 k1``), ``bbox_mm``
    or ``seed_mm`` + ``radius_mm``; optional ``case_id``, ``mask_label``, ``tissue_mask``. Other columns
    (such as ``label``, the class) are ignored here. Paths are relative to the CSV's folder. Rows with no
    lesion locator (the lesion-free cases of a labels.csv) are skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError("no such manifest file", path=path)
    columns, rows = read_table(path, what="manifest")
    if "image" not in columns:
        raise InvalidInputError("manifest needs an 'image' column (and mask, bbox, bbox_mm or seed_mm + radius_mm)", path=path)
    if not rows:
        raise InvalidInputError("manifest lists no cases", path=path)
    base, cases, fixed, seen, skipped = path.parent, [], [], {}, []
    for line, row in enumerate(rows, start=2):
        def cell(name: str) -> str | None:
            value = row.get(name)
            return value.strip() if value and value.strip() else None

        if not any(cell(name) for name in ("mask", "bbox", "bbox_mm", "seed_mm")):
            skipped.append(line)  # e.g. a lesion-free case of labels.csv: no lesion to measure
            continue

        try:
            image = _optional_path(cell("image"), base)
            if image is None:
                raise ConfigError("empty image cell")
            given = cell("case_id")
            case_id = safe_case_id(given) if given else case_id_from_path(image)  # made unique below
            bbox, bbox_mm, seed = cell("bbox"), cell("bbox_mm"), cell("seed_mm")
            radius = cell("radius_mm")
            case = CaseSpec(
                case_id=case_id,
                image=image,
                mask=_optional_path(cell("mask"), base),
                mask_label=cell("mask_label"),
                bbox=parse_numbers(bbox, count=6, what="bbox") if bbox else None,
                bbox_mm=parse_numbers(bbox_mm, count=6, what="bbox_mm") if bbox_mm else None,
                seed_mm=parse_numbers(seed, count=3, what="seed_mm") if seed else None,
                radius_mm=parse_numbers(radius, count=1, what="radius_mm")[0] if radius else None,
                tissue_mask=_optional_path(cell("tissue_mask"), base),
            )
        except ConfigError as error:
            raise InvalidInputError(f"line {line}: {error.problem}", path=path) from None
        if given and seen.setdefault(case.case_id, line) != line:
            raise InvalidInputError(f"line {line}: case id {case.case_id!r} repeats line {seen[case.case_id]}", path=path)
        cases.append(case)
        fixed.append(case.case_id if given else None)
    if skipped:
        logger.warning("%s: %d row(s) without mask, bbox, bbox_mm or seed_mm skipped (lines %s)",
                       path.name, len(skipped), ", ".join(map(str, skipped[:10])))
    if not cases:
        raise InvalidInputError("no row has a mask, bbox, bbox_mm or seed_mm to locate its lesion", path=path)
    ids = unique_case_ids([case.image for case in cases], fixed=fixed)
    return [replace(case, case_id=case_id) for case, case_id in zip(cases, ids)]


def cases_from_source(
    source: str | Path,
    *,
    mask: Path | None = None,
    mask_label: str | None = None,
    bbox: str | None = None,
    bbox_mm: str | None = None,
    seed_mm: str | None = None,
    radius_mm: float | None = None,
    tissue_mask: Path | None = None,
) -> list[CaseSpec]:
    """A manifest (``.csv``) or one image with exactly one of mask / bbox / bbox-mm / seed + radius."""
    source = Path(source)
    single = (mask, bbox, bbox_mm, seed_mm, radius_mm, tissue_mask, mask_label)
    if source.suffix.lower() == ".csv":
        if any(v is not None for v in single):
            raise ConfigError("with a manifest, give masks, boxes and tissue masks as manifest columns, not options")
        return read_manifest(source)
    if not source.exists():
        raise InvalidInputError("no such image file or folder", path=source)
    return [CaseSpec(
        case_id=case_id_from_path(source), image=source, mask=mask, mask_label=mask_label,
        bbox=parse_numbers(bbox, count=6, what="--bbox") if bbox else None,
        bbox_mm=parse_numbers(bbox_mm, count=6, what="--bbox-mm") if bbox_mm else None,
        seed_mm=parse_numbers(seed_mm, count=3, what="--seed-point") if seed_mm else None,
        radius_mm=radius_mm, tissue_mask=tissue_mask,
    )]
