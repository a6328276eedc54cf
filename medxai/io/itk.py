"""NRRD, MHA/MHD and other ITK formats through SimpleITK, converted from ITK's LPS to RAS."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medxai.errors import InvalidInputError
from medxai.io.atomic import atomic_path
from medxai.io.preflight import (check_geometry, check_inside, check_memory, check_path, check_shape, check_voxel_type,
                                  narrow_integers)
from medxai.volume import Step, Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
HEADER_LIMIT = 2**20  # bytes of a MetaImage/NRRD header searched for its data file names (LISTs included)
_DATA_FILE_KEYS = ("elementdatafile", "data file", "datafile")


def itk_geometry_to_affine(direction: tuple[float, ...], spacing: tuple[float, ...], origin: tuple[float, ...]) -> np.ndarray:
    """The RAS voxel-to-world affine of an ITK image (direction/spacing/origin are in LPS)."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) @ np.diag(spacing)
    lps[:3, 3] = origin
    return LPS_TO_RAS @ lps


def detached_data_files(path: Path) -> list[str]:
    """The data file names a MetaImage (``ElementDataFile``) or NRRD (``data file``) header refers to:
    none for data in the file itself (``LOCAL``, attached NRRD), each name of a ``LIST``, and the format of a
    ``<format> <min> <max> <step>`` pattern. Parsed here because SimpleITK only exposes the pixels it reads."""
    metaimage = path.name.lower().endswith((".mhd", ".mha"))
    with path.open("rb") as handle:
        lines = handle.read(HEADER_LIMIT).decode("latin-1").splitlines()
    for index, line in enumerate(lines):
        if not metaimage and not line.strip():
            return []  # an NRRD header ends at its first blank line
        key, separator, value = line.partition("=" if metaimage else ":")
        if not separator or key.strip().lower() not in _DATA_FILE_KEYS:
            continue
        words = value.split()
        if not words or words[0].upper() == "LOCAL":
            return []
        if words[0].upper() == "LIST":
            return [name.strip() for name in lines[index + 1:] if name.strip()]
        return [words[0]] if "%" in words[0] and len(words) >= 4 else [value.strip()]
    return []


def _check_data_files(path: Path) -> None:
    """Refuse a header whose data files lie outside its folder, or are named by a pattern whose folder varies."""
    for name in detached_data_files(path):
        if "%" in str(Path(name).parent):
            raise InvalidInputError(f"data file pattern {name!r} varies its folder: refused", path=path)
        check_inside(path, name)


def read_itk(path: str | Path) -> Volume:
    """Read a 3D scalar image with SimpleITK (NRRD, MHA, MHD, ...), checking its header before any voxel is read."""
    path = Path(path)
    check_path(path)
    _check_data_files(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        _check_header(path, reader)
        image = reader.Execute()
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        raise InvalidInputError(f"not a readable image file ({first_line})", path=path) from None
    data = narrow_integers(path, np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)))
    affine = itk_geometry_to_affine(image.GetDirection(), image.GetSpacing(), image.GetOrigin())
    metadata = {"source": path.name, "format": "itk"}
    return Volume(data=data, affine=affine, metadata=metadata, history=(Step("read_itk", {"file": path.name}),))


def _check_header(path: Path, reader: sitk.ImageFileReader) -> None:
    """Dimension, components, voxel type, geometry and memory from the header read by ``ReadImageInformation``."""
    if reader.GetDimension() != 3:
        raise InvalidInputError(f"expected a 3D volume, found {reader.GetDimension()}D", path=path)
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if reader.GetNumberOfComponents() != 1:
        raise InvalidInputError(f"expected a scalar image, found {reader.GetNumberOfComponents()} components ({pixel}: "
                                f"colour, vector or complex voxels are not supported)", path=path)
    dtype = sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], reader.GetPixelID())).dtype  # SimpleITK's own mapping
    check_voxel_type(path, dtype, pixel)
    shape = check_shape(path, reader.GetSize())
    check_geometry(path, itk_geometry_to_affine(reader.GetDirection(), reader.GetSpacing(), reader.GetOrigin()))
    check_memory(path, shape, dtype.itemsize)


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
