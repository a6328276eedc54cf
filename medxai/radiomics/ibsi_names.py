"""PyRadiomics feature names -> IBSI-1 identifiers (tags as in the IBSI reference tables, e.g. ``stat_kurt``).

The correspondence follows PyRadiomics' documentation and the IBSI 1 reference manual (arXiv:1612.07003).
Two conventions differ, and the ``ibsi_<tag>`` columns give IBSI's: kurtosis (PyRadiomics: Pearson's,
IBSI: excess kurtosis, Pearson - 3) and the PCA axis lengths (PyRadiomics divides the voxel coordinates'
covariance by N, IBSI's reference values by N - 1: a factor sqrt(N / (N - 1)), N the voxel count). Texture tags carry IBSI's aggregation: ``3D_avg`` (GLCM/GLRLM: features per direction,
averaged), ``3D`` (GLSZM, NGTDM, NGLDM), and for 2D the same with ``2D`` (per slice, averaged over slices,
what ``texture2D`` computes) or ``2_5D`` (PyRadiomics' own ``force2D``: in-plane matrices merged over
slices).
"""
from __future__ import annotations

import math
from typing import Mapping

FIRSTORDER = {
    "Energy": "stat_energy", "Entropy": "ih_entropy", "Minimum": "stat_min", "10Percentile": "stat_p10",
    "90Percentile": "stat_p90", "Maximum": "stat_max", "Mean": "stat_mean", "Median": "stat_median",
    "InterquartileRange": "stat_iqr", "Range": "stat_range", "MeanAbsoluteDeviation": "stat_mad",
    "RobustMeanAbsoluteDeviation": "stat_rmad", "RootMeanSquared": "stat_rms", "Skewness": "stat_skew",
    "Kurtosis": "stat_kurt", "Variance": "stat_var", "Uniformity": "ih_uniformity",
}
SHAPE = {
    "MeshVolume": "morph_volume", "VoxelVolume": "morph_vol_approx", "SurfaceArea": "morph_area_mesh",
    "SurfaceVolumeRatio": "morph_av", "Sphericity": "morph_sphericity", "Maximum3DDiameter": "morph_diam",
    "MajorAxisLength": "morph_pca_maj_axis", "MinorAxisLength": "morph_pca_min_axis",
    "LeastAxisLength": "morph_pca_least_axis", "Elongation": "morph_pca_elongation", "Flatness": "morph_pca_flatness",
}
GLCM = {
    "Autocorrelation": "cm_auto_corr", "JointAverage": "cm_joint_avg", "ClusterProminence": "cm_clust_prom",
    "ClusterShade": "cm_clust_shade", "ClusterTendency": "cm_clust_tend", "Contrast": "cm_contrast",
    "Correlation": "cm_corr", "DifferenceAverage": "cm_diff_avg", "DifferenceEntropy": "cm_diff_entr",
    "DifferenceVariance": "cm_diff_var", "JointEnergy": "cm_energy", "JointEntropy": "cm_joint_entr",
    "Imc1": "cm_info_corr1", "Imc2": "cm_info_corr2", "Idm": "cm_inv_diff_mom", "Idmn": "cm_inv_diff_mom_norm",
    "Id": "cm_inv_diff", "Idn": "cm_inv_diff_norm", "InverseVariance": "cm_inv_var",
    "MaximumProbability": "cm_joint_max", "SumAverage": "cm_sum_avg", "SumEntropy": "cm_sum_entr",
    "SumSquares": "cm_joint_var",
}
GLRLM = {
    "ShortRunEmphasis": "rlm_sre", "LongRunEmphasis": "rlm_lre", "GrayLevelNonUniformity": "rlm_glnu",
    "GrayLevelNonUniformityNormalized": "rlm_glnu_norm", "RunLengthNonUniformity": "rlm_rlnu",
    "RunLengthNonUniformityNormalized": "rlm_rlnu_norm", "RunPercentage": "rlm_r_perc",
    "GrayLevelVariance": "rlm_gl_var", "RunVariance": "rlm_rl_var", "RunEntropy": "rlm_rl_entr",
    "LowGrayLevelRunEmphasis": "rlm_lgre", "HighGrayLevelRunEmphasis": "rlm_hgre",
    "ShortRunLowGrayLevelEmphasis": "rlm_srlge", "ShortRunHighGrayLevelEmphasis": "rlm_srhge",
    "LongRunLowGrayLevelEmphasis": "rlm_lrlge", "LongRunHighGrayLevelEmphasis": "rlm_lrhge",
}
GLSZM = {
    "SmallAreaEmphasis": "szm_sze", "LargeAreaEmphasis": "szm_lze", "GrayLevelNonUniformity": "szm_glnu",
    "GrayLevelNonUniformityNormalized": "szm_glnu_norm", "SizeZoneNonUniformity": "szm_zsnu",
    "SizeZoneNonUniformityNormalized": "szm_zsnu_norm", "ZonePercentage": "szm_z_perc",
    "GrayLevelVariance": "szm_gl_var", "ZoneVariance": "szm_zs_var", "ZoneEntropy": "szm_zs_entr",
    "LowGrayLevelZoneEmphasis": "szm_lgze", "HighGrayLevelZoneEmphasis": "szm_hgze",
    "SmallAreaLowGrayLevelEmphasis": "szm_szlge", "SmallAreaHighGrayLevelEmphasis": "szm_szhge",
    "LargeAreaLowGrayLevelEmphasis": "szm_lzlge", "LargeAreaHighGrayLevelEmphasis": "szm_lzhge",
}
GLDM = {  # IBSI's neighbouring grey level dependence matrix (NGLDM) with alpha = 0
    "SmallDependenceEmphasis": "ngl_lde", "LargeDependenceEmphasis": "ngl_hde", "GrayLevelNonUniformity": "ngl_glnu",
    "DependenceNonUniformity": "ngl_dcnu", "DependenceNonUniformityNormalized": "ngl_dcnu_norm",
    "GrayLevelVariance": "ngl_gl_var", "DependenceVariance": "ngl_dc_var", "DependenceEntropy": "ngl_dc_entr",
    "LowGrayLevelEmphasis": "ngl_lgce", "HighGrayLevelEmphasis": "ngl_hgce",
    "SmallDependenceLowGrayLevelEmphasis": "ngl_ldlge", "SmallDependenceHighGrayLevelEmphasis": "ngl_ldhge",
    "LargeDependenceLowGrayLevelEmphasis": "ngl_hdlge", "LargeDependenceHighGrayLevelEmphasis": "ngl_hdhge",
}
NGTDM = {"Coarseness": "ngt_coarseness", "Contrast": "ngt_contrast", "Busyness": "ngt_busyness",
         "Complexity": "ngt_complexity", "Strength": "ngt_strength"}

CLASSES: Mapping[str, Mapping[str, str]] = {
    "firstorder": FIRSTORDER, "shape": SHAPE, "glcm": GLCM, "glrlm": GLRLM, "glszm": GLSZM, "gldm": GLDM, "ngtdm": NGTDM,
}
_AVERAGED = ("glcm", "glrlm")  # per-direction features averaged; the other matrices merge directions


def ibsi_tag(column: str, aggregation: str = "3D") -> str | None:
    """The IBSI tag of a PyRadiomics column ``original_<class>_<feature>`` (``None``: no IBSI equivalent).

    ``aggregation`` is ``3D``, ``2D`` (per slice) or ``2_5D`` (PyRadiomics' force2D)."""
    parts = column.split("_", 2)
    if len(parts) != 3 or parts[0] != "original":
        return None
    _, name, feature = parts
    tag = CLASSES.get(name, {}).get(feature)
    if tag is None or name in ("firstorder", "shape"):
        return tag
    return f"{tag}_{aggregation}" + ("_avg" if name in _AVERAGED else "")


_PCA_AXES = ("original_shape_MajorAxisLength", "original_shape_MinorAxisLength", "original_shape_LeastAxisLength")


def ibsi_value(column: str, value: float, voxels: float | None = None) -> float:
    """A PyRadiomics value in IBSI's convention: kurtosis excess (Pearson - 3); PCA axes with the N - 1
    covariance (needs ``voxels``, the region's voxel count: NaN without it); everything else unchanged."""
    if column == "original_firstorder_Kurtosis":
        return value - 3.0
    if column in _PCA_AXES:
        return value * math.sqrt(voxels / (voxels - 1)) if voxels is not None and voxels > 1 else math.nan
    return value


def ibsi_columns(row: Mapping[str, object], aggregation: str = "3D", voxel_volume: float | None = None) -> dict[str, float]:
    """``ibsi_<tag>`` columns for every feature column of ``row`` with an IBSI equivalent (``voxel_volume``:
    mm^3 of the grid the shape features were computed on, to count the region's voxels)."""
    volume = row.get("original_shape_VoxelVolume")
    voxels = round(volume / voxel_volume) if isinstance(volume, float) and voxel_volume and math.isfinite(volume) else None
    out: dict[str, float] = {}
    for column, value in row.items():
        tag = ibsi_tag(column, aggregation)
        if tag is not None and isinstance(value, float):
            out[f"ibsi_{tag}"] = ibsi_value(column, value, voxels)
    return out
