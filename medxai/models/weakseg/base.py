"""Global-max-pooling networks: the class heatmaps are the network's own output, the logits their maxima.

Chatterjee et al., "Weakly-supervised segmentation using inherently-explainable classification models and
their application to brain tumour classification" (GP-UNet, GP-ShuffleUNet, GP-ReconResNet), after
Dubost et al., "GP-Unet: lesion detection from weak labels with a 3D regression network" (MICCAI 2017).

One deliberate difference from the authors' code: they max-pool the decoder features and then apply the
1x1 classifier (``last(GMP(x))``), so the score is not exactly the peak of the drawn map. Here the 1x1
classifier comes first and the logit of class ``c`` *is* ``max`` over voxels of heatmap ``c``, so the map
that is thresholded is exactly the evidence the decision used.

Pooling: global max pooling (the paper's) or, with ``sharpness=r``, log-sum-exp pooling, the smooth
maximum ``(1/r) log(mean_v exp(r m(v)))`` (Pinheiro & Collobert, CVPR 2015), which tends to the maximum
as the map's contrast grows and to the mean while the map is flat. Max pooling sends the gradient to one
voxel per map; at a random start that voxel is wherever the untrained map peaks (on the phantoms, a bright
distractor present in both classes), lesion and normal cases then push the same voxel up and down, and
training stalls at chance (measured: loss stuck at 0.693 for 15-20 epochs at 32^3 and 48^3). Log-sum-exp
pooling spreads the gradient over every voxel in proportion to ``exp(r m(v))``, so the lesion is learnt
first as a region and then sharpened. Either way the map stays the network's own evidence: the logit is a
fixed, monotone function of that map and nothing else.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medxai.errors import ConfigError


def parse_pooling(text: str) -> float | None:
    """``max`` (global max pooling: None) or ``lse:R`` (log-sum-exp pooling with sharpness R > 0)."""
    if text.strip() == "max":
        return None
    kind, _, value = text.partition(":")
    try:
        sharpness = float(value)
    except ValueError:
        sharpness = math.nan
    if kind.strip() != "lse" or not sharpness > 0 or not math.isfinite(sharpness):
        raise ConfigError(f"pooling must be 'max' or 'lse:R' with a positive sharpness R, got {text!r}")
    return sharpness


class GlobalMaxPoolingNetwork(nn.Module):
    """Wrap a fully convolutional ``backbone`` (N, C, X, Y, Z) -> (N, K, X, Y, Z) into a classifier.

    ``heatmaps(x)`` returns the K class maps at the input's own resolution; ``forward(x)`` returns the
    logits ``(N, K)``, the global maximum of each map (or its log-sum-exp mean with ``sharpness``). Inputs whose sizes are not multiples of
    ``divisor`` (the backbone's total down-sampling) are padded at the far end by edge replication and
    the maps cropped back, so any size works (odd, anisotropic). ``encoder_layer`` names the module (inside
    ``backbone``) whose ``encoder_channels`` features deep supervision reads (None: no deep supervision).
    """

    def __init__(self, backbone: nn.Module, *, divisor: int, sharpness: float | None = None,
                 encoder_layer: str | None = None, encoder_channels: int = 0) -> None:
        super().__init__()
        # an encoder level's features (module path inside ``backbone``, channels): what
        # training's deep supervision (``deep_supervision.py``) feeds its auxiliary classifier
        self.encoder_layer = encoder_layer
        self.encoder_channels = int(encoder_channels)
        self.set_sharpness(sharpness)
        # channels-last 3D tensors make oneDNN's Conv3d faster on CPU with these small channel counts: a
        # training step of the default GP-UNet took 1.6-2.5x less time (32^3 and 64^3, 1 thread, torch 2.13);
        # maps and gradients agree with contiguous format to float rounding (tests/models/test_gp_networks.py)
        self.backbone = backbone.to(memory_format=torch.channels_last_3d)
        self.divisor = int(divisor)
        self.negative_class: int | None = None
        self.register_parameter("negative_level", None)

    def set_negative_class(self, index: int | None) -> None:
        """Give class ``index`` a flat map, one learnt level everywhere (None: every class its own map).

        For a class that is the *absence* of a finding (``normal`` in a presence task) no voxel holds evidence
        for it. With a map of its own the network may invert the roles (measured: GP-UNet on 1600 phantoms,
        held-out AUC 0.94 from a ``normal`` map that peaked wherever no lesion was near, while the ``lesion``
        map was a constant plateau in a corner: median Dice 0.00). A flat map leaves one way to raise the
        positive class's logit: a peak of its own map, where the finding is (the multiple-instance view of
        Dubost et al.'s single-map GP-Unet). The backbone's channel ``index`` is then unused."""
        self.negative_class = None if index is None else int(index)
        self.register_parameter("negative_level", None if index is None else nn.Parameter(torch.zeros(())))

    def set_sharpness(self, sharpness: float | None) -> None:
        """Pool by global max (``None``) or by log-sum-exp with sharpness ``sharpness`` > 0."""
        if sharpness is not None and not float(sharpness) > 0:
            raise ValueError(f"log-sum-exp sharpness must be positive, got {sharpness}")
        self.sharpness = None if sharpness is None else float(sharpness)

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """Class heatmaps ``(N, K, X, Y, Z)`` on the input grid (raw scores, not normalised)."""
        size = x.shape[2:]
        extra = [(-int(n)) % self.divisor for n in size]
        if any(extra):
            # F.pad lists the last axis first: (z_before, z_after, y_before, y_after, x_before, x_after)
            x = F.pad(x, (0, extra[2], 0, extra[1], 0, extra[0]), mode="replicate")
        maps = self.backbone(x.contiguous(memory_format=torch.channels_last_3d))
        maps = maps[:, :, : size[0], : size[1], : size[2]].contiguous()
        if self.negative_class is None:
            return maps
        k = self.negative_class
        flat = self.negative_level.to(maps.dtype).expand_as(maps[:, k : k + 1])
        return torch.cat([maps[:, :k], flat, maps[:, k + 1 :]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.heatmaps(x))

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` of class maps ``(N, K, X, Y, Z)``: their maximum, or their log-sum-exp mean."""
        if self.sharpness is None:
            return torch.amax(maps, dim=(2, 3, 4))
        flat = maps.flatten(2).float()
        r = self.sharpness
        return ((torch.logsumexp(r * flat, dim=2) - math.log(flat.shape[2])) / r).to(maps.dtype)
