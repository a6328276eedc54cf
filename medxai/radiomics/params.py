"""PyRadiomics parameter files: the shipped presets (``ct``, ``mr``, ``ibsi``) or a user's YAML file."""
from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from medxai.errors import ConfigError

if TYPE_CHECKING:
    from radiomics.featureextractor import RadiomicsFeatureExtractor

PRESETS = ("ct", "mr", "ibsi")


def params_path(params: str | Path) -> Path:
    """The YAML file behind a preset name, or ``params`` itself when it is an existing file."""
    if str(params) in PRESETS:
        return Path(str(resources.files("medxai.radiomics") / "params" / f"{params}.yaml"))
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


def load_extractor(params: str | Path, *, diagnostics: bool = False) -> "RadiomicsFeatureExtractor":
    """A PyRadiomics extractor configured (and schema-validated by PyRadiomics) from ``params``."""
    from pykwalify.errors import PyKwalifyException
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    _route_pyradiomics_logging()
    path = params_path(params)
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"not valid YAML ({' '.join(str(error).split())})", path=path) from None
    if not isinstance(settings, dict):
        raise ConfigError("a PyRadiomics parameter file must be a mapping (setting:, imageType:, featureClass:)", path=path)
    try:
        extractor = RadiomicsFeatureExtractor(settings)
    except PyKwalifyException as error:
        raise ConfigError(f"not a valid PyRadiomics parameter file ({' '.join(str(error.msg).split())})", path=path) from None
    except (ValueError, TypeError, AttributeError) as error:
        raise ConfigError(f"not a valid PyRadiomics parameter file ({error})", path=path) from None
    extractor.settings["additionalInfo"] = diagnostics
    return extractor
