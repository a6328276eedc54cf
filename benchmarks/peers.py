"""medxai side by side with the libraries it wraps, in the same run, on the same model and input.

Peers are plain Captum with its default settings (only the amount of work, steps/samples/window, is
set equal to medxai's so the ratio measures overhead and batching, not a different amount of work)
and MONAI's ``OcclusionSensitivity`` and ``GradCAM``. The ROI case compares medxai's body-restricted
occlusion with MONAI's full-volume occlusion on the same window and stride.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from benchmarks.attribution_cost import method_options, method_runner
from benchmarks.common import measure_pair, record


def body_phantom(size: int, *, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A volume with an ellipsoidal 'body' (semi-axes 0.30/0.25/0.40 of the field of view) in air, and its mask."""
    generator = torch.Generator().manual_seed(seed)
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    body = (x / 0.30) ** 2 + (y / 0.25) ** 2 + (z / 0.40) ** 2 <= 1.0
    volume = torch.where(body, 0.5 + 0.1 * torch.rand(body.shape, generator=generator), torch.zeros(body.shape))
    return volume[None, None].to(device), body.to(device)


def _captum_peers(network: nn.Module, inputs: torch.Tensor, index: int, *, layer: str | None,
                  options: dict[str, dict[str, Any]]) -> dict[str, tuple[str, Callable[[], Any]]]:
    from captum.attr import (LRP, DeepLift, FeatureAblation, GuidedBackprop, InputXGradient, IntegratedGradients,
                             LayerAttribution, LayerGradCam, NoiseTunnel, Occlusion, Saliency)
    from monai.visualize import GradCAM

    from medxai.attribution.cam import get_layer
    from medxai.attribution.feature_ablation import supervoxels
    from medxai.attribution.lrp import attach_rules
    from medxai.attribution.lrp_surgery import lrp_network
    from medxai.attribution.model_surgery import make_explainable
    from medxai.attribution.occlusion import window_voxels

    steps = options.get("integrated_gradients", {}).get("n_steps", 32)
    samples = options.get("smoothgrad", {}).get("n_samples", 25)
    stdev = 0.15 * float(inputs.max() - inputs.min())
    spatial = tuple(inputs.shape[2:])
    occ = options.get("occlusion", {})
    window = window_voxels(occ.get("window_mm", 16.0), (1.0, 1.0, 1.0), spatial)
    stride = window_voxels(occ.get("stride_mm", 8.0), (1.0, 1.0, 1.0), spatial)
    peers: dict[str, tuple[str, Callable[[], Any]]] = {
        "saliency": ("captum Saliency(abs=True)", lambda: Saliency(network).attribute(inputs, target=index)),
        "integrated_gradients": (f"captum IntegratedGradients(n_steps={steps}, internal_batch_size=None)",
                                 lambda: IntegratedGradients(network).attribute(inputs, target=index, n_steps=steps)),
        "smoothgrad": (f"captum NoiseTunnel(Saliency) nt_samples={samples}, nt_samples_batch_size=None",
                       lambda: NoiseTunnel(Saliency(network)).attribute(inputs, nt_type="smoothgrad", nt_samples=samples,
                                                                        stdevs=stdev, target=index, abs=True)),
        "occlusion": (f"captum Occlusion window {window} stride {stride}, perturbations_per_eval=1",
                      lambda: Occlusion(network).attribute(inputs, sliding_window_shapes=(1, *window),
                                                           strides=(1, *stride), baselines=0.0, target=index)),
        "input_x_gradient": ("captum InputXGradient", lambda: InputXGradient(network).attribute(inputs, target=index)),
    }
    # Captum's hook-based methods refuse MONAI's reused in-place ReLUs and its LRP has no 3D rules, so
    # those peers run on the same prepared copies medxai uses (built here, untimed; medxai caches them
    # per model): the ratio is then medxai's own overhead over Captum's rules.
    explainable = make_explainable(network)
    peers["deeplift"] = ("captum DeepLift on the in-place-free copy",
                         lambda: DeepLift(explainable).attribute(inputs, target=index))
    peers["guided_backprop"] = ("captum GuidedBackprop on the in-place-free copy",
                                lambda: GuidedBackprop(explainable).attribute(inputs, target=index))
    relevance_network = lrp_network(explainable, inputs)

    def lrp() -> torch.Tensor:
        attach_rules(relevance_network, epsilon=1e-6)  # Captum deletes the rules after every call
        return LRP(relevance_network).attribute(inputs, target=index)

    peers["lrp"] = ("captum LRP (epsilon rules) on the LRP-ready copy", lrp)
    ablation = options.get("feature_ablation", {})
    mask = supervoxels(inputs, size_mm=ablation.get("supervoxel_mm", 12.0), spacing_mm=(1.0, 1.0, 1.0),
                       compactness=ablation.get("compactness", 0.3))
    peers["feature_ablation"] = (
        "captum FeatureAblation, the same SLIC mask given (untimed), perturbations_per_eval=1",
        lambda: FeatureAblation(network).attribute(inputs, baselines=0.0, target=index, feature_mask=mask))
    if layer:
        module = get_layer(network, layer)
        peers["gradcam"] = ("captum LayerGradCam + interpolate", lambda: LayerAttribution.interpolate(
            LayerGradCam(network, module).attribute(inputs, target=index, relu_attributions=True),
            spatial, interpolate_mode="trilinear"))
        peers["gradcam/monai"] = ("monai GradCAM", lambda: GradCAM(network, target_layers=layer)(inputs, class_idx=index))
    return peers


def peer_records(network: nn.Module, inputs: torch.Tensor, *, arch: str, device: str, repeats: int,
                 configured: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """medxai vs each peer per method, timed alternately (medxai, peer, medxai, ...) under the same load."""
    from medxai.attribution.memory import auto_batch_size

    with torch.no_grad():
        index = int(network(inputs)[0].argmax())
    batch_size = auto_batch_size(network, inputs)
    layer = method_options("gradcam", arch, configured).get("layer")
    size = "x".join(str(n) for n in inputs.shape[2:])
    rows = []
    for key, (peer, peer_call) in _captum_peers(network, inputs, index, layer=layer, options=configured).items():
        name = key.split("/")[0]
        ours, _ = method_runner(name, network, inputs, device=device, batch_size=batch_size,
                                options=method_options(name, arch, configured))
        try:
            mine, theirs = measure_pair(ours, peer_call, repeats=repeats, device=device)
        except (RuntimeError, MemoryError) as error:  # e.g. a peer's hooks refusing in-place ReLUs
            rows.append({"name": f"peer/{key}", "method": name, "peer": peer, "error": str(error).splitlines()[0]})
            continue
        rows.append(record(f"peer/{key}", name, size, device, mine, model=arch, peer=peer,
                           peer_median_s=theirs["median_s"], peer_spread_s=theirs["spread_s"], batch_size=batch_size))
    return rows


def roi_occlusion_record(network: nn.Module, *, size: int, window: int, stride: int, arch: str, device: str,
                         repeats: int) -> dict[str, Any]:
    """medxai occlusion restricted to the body mask vs MONAI OcclusionSensitivity over the whole volume,
    same window, same stride (MONAI ``overlap = 1 - stride / window``), constant 0 baseline."""
    from monai.visualize import OcclusionSensitivity

    from medxai.attribution.memory import auto_batch_size

    inputs, body = body_phantom(size, device=device)
    batch_size = auto_batch_size(network, inputs)
    options = {"window_mm": float(window), "stride_mm": float(stride), "roi": body}
    ours, last = method_runner("occlusion", network, inputs, device=device, batch_size=batch_size, options=options)
    monai = OcclusionSensitivity(network, mask_size=window, overlap=1.0 - stride / window, mode=0.0, verbose=False)

    def peer() -> Any:
        with torch.no_grad():
            return monai(inputs)

    mine, theirs = measure_pair(ours, peer, repeats=repeats, device=device)
    return record("peer/occlusion_roi_vs_monai", "occlusion (body ROI)", f"{size}^3", device, mine, model=arch,
                  peer=f"monai OcclusionSensitivity(mask_size={window}, overlap={1.0 - stride / window:g}, mode=0.0, n_batch=16)",
                  peer_median_s=theirs["median_s"], peer_spread_s=theirs["spread_s"], batch_size=batch_size,
                  body_fraction=float(body.float().mean()), windows_evaluated=last["diagnostics"].get("windows_evaluated"),
                  goal="ratio_to_peer <= 0.5 (>= 2x faster)")
