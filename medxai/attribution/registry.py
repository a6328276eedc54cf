"""The method names of the command-line contract and the one way to build a method by name."""
from __future__ import annotations

import inspect
from typing import Any, Mapping

from torch import nn

from medxai.attribution.base import AttributionMethod, Execution
from medxai.attribution.deeplift import DeepLiftMethod
from medxai.attribution.feature_ablation import FeatureAblationMethod
from medxai.attribution.gradcam import GradCamMethod
from medxai.attribution.gradcampp import GradCamPlusPlusMethod
from medxai.attribution.guided_backprop import GuidedBackpropMethod
from medxai.attribution.input_x_gradient import InputXGradientMethod
from medxai.attribution.integrated_gradients import IntegratedGradientsMethod
from medxai.attribution.lrp import LrpMethod
from medxai.attribution.occlusion import OcclusionMethod
from medxai.attribution.saliency import SaliencyMethod
from medxai.attribution.smooth_gradcampp import SmoothGradCamPlusPlusMethod
from medxai.attribution.smoothgrad import SmoothGradMethod
from medxai.errors import ConfigError


METHODS: dict[str, type[AttributionMethod]] = {
    method.name: method
    for method in (
        SaliencyMethod, InputXGradientMethod, IntegratedGradientsMethod, SmoothGradMethod, GuidedBackpropMethod,
        DeepLiftMethod, OcclusionMethod, GradCamMethod, GradCamPlusPlusMethod, SmoothGradCamPlusPlusMethod,
        LrpMethod, FeatureAblationMethod,
    )
}


def check_method_names(names: list[str] | tuple[str, ...]) -> None:
    """ConfigError naming the valid methods when any of ``names`` is unknown."""
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method {', '.join(unknown)} (valid: {', '.join(METHODS)})")


def create_method(
    name: str, network: nn.Module, *, execution: Execution | None = None, options: Mapping[str, Any] | None = None
) -> AttributionMethod:
    """The method ``name`` on ``network`` with its ``options`` (the method class's keyword arguments)."""
    check_method_names([name])
    method = METHODS[name]
    accepted = [p for p in inspect.signature(method).parameters if p not in ("network", "execution")]
    unknown = sorted(set(options or {}) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown option {', '.join(unknown)} for method {name} (valid: {', '.join(accepted) or 'none'})")
    return method(network, execution=execution, **dict(options or {}))
