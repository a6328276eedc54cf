"""Up-front checks the model stages share: method names and target classes, named by pipeline key."""
from __future__ import annotations

from typing import Sequence, TYPE_CHECKING

from medxai.errors import ConfigError
from medxai.pipeline.schema import Pipeline

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel


def check_methods(pipeline: Pipeline, key: str, methods: Sequence[str]) -> None:
    from medxai.attribution.registry import check_method_names

    try:
        check_method_names(list(methods))
    except ConfigError as error:
        raise ConfigError(f"key '{key}': {error.problem}", path=pipeline.source) from None


def check_target(pipeline: Pipeline, key: str, target: str, model: LoadedModel) -> None:
    if target != "predicted" and target not in model.classes:
        raise ConfigError(f"key '{key}': {target!r} is not one of the model's classes ({', '.join(model.classes)})",
                          path=pipeline.source)
