"""IBSI-1 compliance check: the phantoms through medxai's presets, compared with the reference tables.

Data layout (the IBSI-1 data sets, ``theibsi/data_sets``, and the consensus reference values as
tabulated by ``oncoray/mirp``: ``reference value;tolerance;tag``)::

    DATA/ibsi_1_digital_phantom/nifti/{image,mask}/phantom.nii.gz, mask.nii.gz
    DATA/ibsi_1_ct_radiomics_phantom/nifti/image/phantom.nii.gz, nifti/mask/mask.nii.gz
    DATA/reference_values/ibsi_1_dig_phantom.csv, ibsi_1_chest_config_<a..e>.csv

A configuration whose table is absent is still run (its features are computed) and reported as having
no reference. A value is within tolerance when ``|value - reference| <= tolerance + u/2``, where ``u``
is the unit of the reference's last significant digit (the tables round to 3 significant digits, several
with tolerance 0; an integer's trailing zeros are not significant: ``1490`` is 1.49e3, ``u`` = 10). A
reference of exactly 0 takes its tolerance alone.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from medxai.errors import InvalidInputError
from medxai.radiomics.ibsi_names import ibsi_tag

CONFIGURATIONS: dict[str, tuple[str, str, str]] = {  # name: (preset, phantom folder, reference table)
    "digital": ("ibsi-digital", "ibsi_1_digital_phantom", "ibsi_1_dig_phantom.csv"),
    "A": ("ibsi-a", "ibsi_1_ct_radiomics_phantom", "ibsi_1_chest_config_a.csv"),
    "B": ("ibsi-b", "ibsi_1_ct_radiomics_phantom", "ibsi_1_chest_config_b.csv"),
    "C": ("ibsi-c", "ibsi_1_ct_radiomics_phantom", "ibsi_1_chest_config_c.csv"),
    "D": ("ibsi-d", "ibsi_1_ct_radiomics_phantom", "ibsi_1_chest_config_d.csv"),
    "E": ("ibsi-e", "ibsi_1_ct_radiomics_phantom", "ibsi_1_chest_config_e.csv"),
}
FAMILIES = ("morph", "stat", "ih", "cm", "rlm", "szm", "ngl", "ngt")


@dataclass(frozen=True)
class Reference:
    value: float
    tolerance: float

    def accepts(self, value: float) -> bool:
        return math.isfinite(value) and abs(value - self.value) <= self.tolerance


@dataclass(frozen=True)
class Comparison:
    tag: str
    column: str
    value: float
    reference: Reference | None

    @property
    def family(self) -> str:
        return self.tag.split("_", 1)[0]

    @property
    def within(self) -> bool:
        return self.reference is not None and self.reference.accepts(self.value)


@dataclass
class ConfigurationReport:
    name: str
    preset: str
    has_reference: bool
    comparisons: list[Comparison] = field(default_factory=list)

    def counts(self) -> dict[str, tuple[int, int]]:
        """``family: (compared, within tolerance)`` (features with a reference value only)."""
        out: dict[str, tuple[int, int]] = {}
        for item in self.comparisons:
            if item.reference is not None:
                compared, within = out.get(item.family, (0, 0))
                out[item.family] = (compared + 1, within + int(item.within))
        return out

    def total(self) -> tuple[int, int]:
        counts = self.counts().values()
        return sum(c for c, _ in counts), sum(w for _, w in counts)


def read_reference(path: Path) -> dict[str, Reference]:
    """``tag: Reference`` from a ``reference value;tolerance;tag`` table (rows without a value skipped)."""
    table: dict[str, Reference] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter=";"):
            text, tolerance = (row.get("reference value") or "").strip(), (row.get("tolerance") or "").strip()
            if not text:
                continue
            try:
                value = Decimal(text)
                digits = value if "." in text or value == 0 else value.normalize()
                half_unit = 0 if value == 0 else Decimal(1).scaleb(digits.as_tuple().exponent) / 2  # type: ignore[arg-type]
                table[row["tag"].strip()] = Reference(float(value), float(Decimal(tolerance or "0") + half_unit))
            except InvalidOperation:
                raise InvalidInputError(f"not a number in the reference table: {text!r} / {tolerance!r}", path=path) from None
    return table


def compare(row: dict[str, object], reference: dict[str, Reference], aggregation: str) -> list[Comparison]:
    """Every feature of ``row`` with an IBSI tag (its ``ibsi_<tag>`` column, IBSI's convention) against
    ``reference`` (``None`` where the table has no value)."""
    out = []
    for column, value in row.items():
        tag = ibsi_tag(column, aggregation)
        converted = row.get(f"ibsi_{tag}")
        if tag is not None and isinstance(value, float) and isinstance(converted, float):
            out.append(Comparison(tag, column, converted, reference.get(tag)))
    return out


def run_configuration(name: str, data: Path) -> ConfigurationReport:
    """Run one configuration (``digital``, ``A`` .. ``E``) on its phantom and compare with its table."""
    from medxai.io.readers import read_mask, read_volume
    from medxai.radiomics.extract import extract_features
    from medxai.radiomics.params import load_params
    from medxai.radiomics.shells import peritumoral_regions

    preset, folder, table = CONFIGURATIONS[name]
    phantom = data / folder / "nifti"
    image = read_volume(phantom / "image" / "phantom.nii.gz")
    lesion = read_mask(phantom / "mask" / "mask.nii.gz", image)
    config = load_params(preset)
    row = extract_features(image, peritumoral_regions(lesion, distances_mm=(0,)), case_id=name, params=config)[0]
    table_path = data / "reference_values" / table
    reference = read_reference(table_path) if table_path.is_file() else {}
    assert config.ibsi is not None
    aggregation = "2D" if config.ibsi.texture_2d else "3D"
    return ConfigurationReport(name, preset, table_path.is_file(), compare(row, reference, aggregation))
