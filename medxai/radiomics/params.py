"""PyRadiomics parameter files: the shipped presets or a user's YAML file.

A parameter file is PyRadiomics' own format (``setting:``, ``imageType:``, ``featureClass:``) plus an
optional ``medxai:`` section that PyRadiomics never sees:

- ``modality``: the modality the preset's intensity scale is meant for (``CT``: bin widths in HU; the
  ``ct`` and ``mr`` presets, plain PyRadiomics files, get theirs from ``PRESET_MODALITY``);
- ``ibsiNames``: add IBSI-named columns (see :mod:`medxai.radiomics.ibsi_names`);
- ``ibsi``: medxai does the IBSI image processing before PyRadiomics (see :mod:`medxai.radiomics.ibsi`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from medxai.errors import ConfigError
from medxai.radiomics.ibsi import IbsiSettings

if TYPE_CHECKING:
    from radiomics.featureextractor import RadiomicsFeatureExtractor

PRESETS = ("ct", "mr", "ibsi", "ibsi-a", "ibsi-b", "ibsi-c", "ibsi-d", "ibsi-e")
ALIASES = {"ibsi": "ibsi-c"}
# The IBSI-1 digital phantom's processing (no resampling, bin width 1): used by ``ibsi-check``, not listed.
INTERNAL_PRESETS = ("ibsi-digital",)
_MEDXAI_KEYS = {"modality", "ibsiNames", "ibsi"}
# ct.yaml and mr.yaml stay plain PyRadiomics files (users copy them, PyRadiomics reads them): their modality.
PRESET_MODALITY = {"ct": "CT", "mr": "MR"}


@dataclass(frozen=True)
class RadiomicsParams:
    """A parsed parameter file: PyRadiomics' part and medxai's ``medxai:`` section."""

    path: Path
    pyradiomics: dict[str, Any]
    modality: str | None = None
    ibsi_names: bool = False
    ibsi: IbsiSettings | None = None


def params_path(params: str | Path) -> Path:
    """The YAML file behind a preset name, or ``params`` itself when it is an existing file."""
    name = str(params)
    if name in PRESETS or name in INTERNAL_PRESETS:
        name = ALIASES.get(name, name)
        return Path(str(resources.files("medxai.radiomics") / "params" / f"{name}.yaml"))
    path = Path(params)
    if not path.is_file():
        raise ConfigError(f"no such parameter file (or preset: {', '.join(PRESETS)})", path=path)
    return path


def _route_pyradiomics_logging() -> None:
    """PyRadiomics prints through its own stderr handler: mute it (PyRadiomics needs it kept) and let
    errors propagate to the application's logging instead (its warnings are notes such as "GLCM is
    symmetrical", one per region)."""
    import radiomics

    radiomics.handler.setLevel(logging.CRITICAL + 1)
    radiomics.logger.setLevel(logging.ERROR)


def _medxai_section(section: object, path: Path) -> tuple[str | None, bool, IbsiSettings | None]:
    if section is None:
        return None, False, None
    if not isinstance(section, dict) or set(section) - _MEDXAI_KEYS:
        raise ConfigError(f"'medxai:' must be a mapping with keys among {', '.join(sorted(_MEDXAI_KEYS))}", path=path)
    modality = section.get("modality")
    if modality is not None and not isinstance(modality, str):
        raise ConfigError("medxai: modality must be a DICOM modality such as CT or MR", path=path)
    names = section.get("ibsiNames", False)
    if not isinstance(names, bool):
        raise ConfigError("medxai: ibsiNames must be true or false", path=path)
    ibsi = section.get("ibsi")
    return (modality.upper() if modality else None), names, (None if ibsi is None else IbsiSettings.from_mapping(ibsi, path))


def load_params(params: str | Path | RadiomicsParams) -> RadiomicsParams:
    """Read and split a parameter file (PyRadiomics validates its part in :func:`load_extractor`)."""
    if isinstance(params, RadiomicsParams):
        return params
    path = params_path(params)
    preset_modality = PRESET_MODALITY.get(str(params)) if not isinstance(params, Path) else None
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"not valid YAML ({' '.join(str(error).split())})", path=path) from None
    if not isinstance(settings, dict):
        raise ConfigError("a PyRadiomics parameter file must be a mapping (setting:, imageType:, featureClass:)", path=path)
    settings = dict(settings)
    modality, names, ibsi = _medxai_section(settings.pop("medxai", None), path)
    if ibsi is not None:
        _check_ibsi_compatible(settings, path)
    return RadiomicsParams(path=path, pyradiomics=settings, modality=modality or preset_modality, ibsi_names=names, ibsi=ibsi)


_PYRADIOMICS_PROCESSING = ("interpolator", "resampledPixelSpacing", "resegmentRange", "normalize", "binCount")


def _check_ibsi_compatible(settings: dict[str, Any], path: Path) -> None:
    """With ``medxai: ibsi:`` medxai resamples, re-segments and bins: PyRadiomics must not do it again."""
    given = [key for key in _PYRADIOMICS_PROCESSING if (settings.get("setting") or {}).get(key) not in (None, False)]
    if given:
        raise ConfigError(f"with 'medxai: ibsi:' processing, leave {', '.join(given)} out of 'setting:' "
                          "(medxai resamples, re-segments and discretises)", path=path)


def load_extractor(params: str | Path | RadiomicsParams, *, diagnostics: bool = False) -> "RadiomicsFeatureExtractor":
    """A PyRadiomics extractor configured (and schema-validated by PyRadiomics) from ``params``."""
    from pykwalify.errors import PyKwalifyException
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    _route_pyradiomics_logging()
    loaded = load_params(params)
    try:
        extractor = RadiomicsFeatureExtractor(dict(loaded.pyradiomics))
    except PyKwalifyException as error:
        raise ConfigError(f"not a valid PyRadiomics parameter file ({' '.join(str(error.msg).split())})", path=loaded.path) from None
    except (ValueError, TypeError, AttributeError) as error:
        raise ConfigError(f"not a valid PyRadiomics parameter file ({error})", path=loaded.path) from None
    extractor.settings["additionalInfo"] = diagnostics
    return extractor
