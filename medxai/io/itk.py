"""NRRD, MHA/MHD and other ITK formats through SimpleITK, converted from ITK's LPS to RAS."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medxai.errors import InvalidInputError
from medxai.io.atomic import atomic_path
from medxai.volume import Step, Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def itk_geometry_to_affine(direction: tuple[float, ...], spacing: tuple[float, ...], origin: tuple[float, ...]) -> np.ndarray:
    """The RAS voxel-to-world affine of an ITK image (direction/spacing/origin are in LPS)."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) @ np.diag(spacing)
    lps[:3, 3] = origin
    return LPS_TO_RAS @ lps


def read_itk(path: str | Path) -> Volume:
    """Read a 3D scalar image with SimpleITK (NRRD, MHA, MHD, ...)."""
    path = Path(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        raise InvalidInputError(f"not a readable image file ({first_line})", path=path) from None
    if image.GetDimension() != 3:
        raise InvalidInputError(f"expected a 3D volume, found {image.GetDimension()}D", path=path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError(f"expected a scalar image, found {image.GetNumberOfComponentsPerPixel()} components", path=path)
    data = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))
    affine = itk_geometry_to_affine(image.GetDirection(), image.GetSpacing(), image.GetOrigin())
    metadata = {"source": path.name, "format": "itk"}
    return Volume(data=data, affine=affine, metadata=metadata, history=(Step("read_itk", {"file": path.name}),))


def volume_to_sitk(volume: Volume) -> sitk.Image:
    """A SimpleITK image with the volume's geometry (RAS affine converted back to LPS)."""
    lps = LPS_TO_RAS @ volume.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(volume.data, (2, 1, 0))))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (lps[:3, :3] / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in lps[:3, 3]))
    return image


def write_itk(volume: Volume, path: str | Path) -> Path:
    """Write a volume atomically in the ITK format its suffix names (e.g. ``.nrrd``)."""
    with atomic_path(path) as temporary:
        sitk.WriteImage(volume_to_sitk(volume), str(temporary), useCompression=True)
    return Path(path)
