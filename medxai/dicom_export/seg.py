"""DICOM Segmentation (SEG) of a case folder's masks, on the source series' frames (highdicom).

Regions: ``mask.nii.gz`` (``medxai segment``'s weakly-supervised mask) and ``<region>_<d>mm.nii.gz``
(``medxai radiomics extract --save-masks``: ``lesion``, peritumoral ``shell`` and ``expanded`` lesion at a
distance in mm). One binary segment per file, labelled with its distance; each segment has a tracking UID
the structured report refers to.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from medxai.dicom_export.identity import (DEVICE_SERIAL_NUMBER, MANUFACTURER, MODEL_NAME, SOFTWARE_VERSION,
                                          derived_uid, digest)
from medxai.dicom_export.source import SourceSeries, on_source_grid

SERIES_NUMBER = 900
REGION_FILE = re.compile(r"^(lesion|shell|expanded|box)_(\d+(?:\.\d+)?)mm\.nii\.gz$")
# No SNOMED concept names a peritumoral shell or an expanded lesion: a private coding scheme
# (PS3.3 8.2, designator beginning with 99) says exactly what the segment is.
PRIVATE_SCHEME = "99MEDXAI"
TYPES = {
    "mask": codes.cid7151.Lesion,
    "lesion": codes.cid7151.Lesion,
    "shell": Code("SHELL", PRIVATE_SCHEME, "Peritumoral shell"),
    "expanded": Code("EXPANDED", PRIVATE_SCHEME, "Lesion expanded by a margin"),
    "box": Code("BOX", PRIVATE_SCHEME, "Lesion dilated by a per-axis box"),
}
PRIVATE_CODING_SCHEME = hd.coding_schemes.CodingSchemeIdentificationItem(
    designator=PRIVATE_SCHEME, name="medxai private codes", responsible_organization="medxai")
CATEGORIES = {
    "mask": codes.cid7150.MorphologicallyAbnormalStructure,
    "lesion": codes.cid7150.MorphologicallyAbnormalStructure,
    "shell": codes.cid7150.SpatialAndRelationalConcept,
    "expanded": codes.cid7150.SpatialAndRelationalConcept,
    "box": codes.cid7150.SpatialAndRelationalConcept,
}


@dataclass(frozen=True)
class Region:
    """One mask of the case folder on the source grid: what it is and its voxels (bool, (i, j, k))."""

    kind: str  # mask | lesion | shell | expanded | box
    distance_mm: float | None
    path: Path
    data: np.ndarray

    @property
    def label(self) -> str:
        if self.kind == "mask":
            return "weakly-supervised lesion mask"
        distance = f"{self.distance_mm:g}"
        return {"lesion": f"lesion {distance} mm", "shell": f"peritumoral shell {distance} mm",
                "expanded": f"lesion expanded by {distance} mm", "box": f"box dilation {distance} mm"}[self.kind]


def region_files(case_dir: Path) -> list[tuple[str, float | None, Path]]:
    """The mask files of a case folder, ``mask.nii.gz`` first, then regions by kind and distance (in the folder,
    as ``radiomics extract --save-masks`` writes them, or in its ``regions/`` as the pipeline does)."""
    found: list[tuple[str, float | None, Path]] = []
    if (case_dir / "mask.nii.gz").is_file():
        found.append(("mask", None, case_dir / "mask.nii.gz"))
    order = {"lesion": 0, "shell": 1, "expanded": 2, "box": 3}
    folders = [case_dir, *([case_dir / "regions"] if (case_dir / "regions").is_dir() else [])]
    matches = [(m, p) for f in folders for p in f.iterdir() if p.is_file() and (m := REGION_FILE.match(p.name))]
    for match, path in sorted(matches, key=lambda item: (order[item[0].group(1)], float(item[0].group(2)))):
        found.append((match.group(1), float(match.group(2)), path))
    return found


def read_regions(case_dir: Path, source: SourceSeries) -> list[Region]:
    """Every mask of the case folder on the source grid (an error names a mask on another grid)."""
    return [Region(kind, distance, path, on_source_grid(path, source) > 0) for kind, distance, path in region_files(case_dir)]


def segment_uid(source: SourceSeries, region: Region) -> str:
    """The tracking UID of a region's segment (stable for the same voxels)."""
    return derived_uid(source.first.SeriesInstanceUID, "segment", region.label, digest(np.packbits(region.data).tobytes()))


def _description(number: int, region: Region, source: SourceSeries) -> hd.seg.SegmentDescription:
    family = codes.cid7162.ArtificialIntelligence if region.kind == "mask" else codes.cid7162.MorphologicalOperations
    algorithm = hd.AlgorithmIdentificationSequence(name="medxai segment" if region.kind == "mask" else "medxai radiomics",
                                                   family=family, version=SOFTWARE_VERSION)
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=region.label,
        segmented_property_category=CATEGORIES[region.kind],
        segmented_property_type=TYPES[region.kind],
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=segment_uid(source, region),
        tracking_id=region.label,
    )


def build_seg(regions: list[Region], source: SourceSeries) -> hd.seg.Segmentation:
    """One SEG instance with a binary segment per region, frames on the source images."""
    frames = np.stack([source.frames_of(region.data) for region in regions], axis=-1).astype(np.uint8)
    content = digest(frames.tobytes(), "|".join(r.label for r in regions).encode())
    series_uid = derived_uid(source.first.SeriesInstanceUID, "seg-series", content)
    return hd.seg.Segmentation(
        source_images=list(source.datasets),
        pixel_array=frames,
        pixel_measures=source.pixel_measures,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(n, region, source) for n, region in enumerate(regions, start=1)],
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=derived_uid(series_uid, "seg", 1),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=SOFTWARE_VERSION,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        content_label="MEDXAI_SEG",
        content_description="medxai masks on the source series",
        series_description="medxai segmentation",
        coding_schemes=[PRIVATE_CODING_SCHEME],
    )
