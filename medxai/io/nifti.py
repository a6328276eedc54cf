"""NIfTI reading and writing with nibabel, keeping the affine exactly."""
from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from medxai.errors import InvalidInputError
from medxai.io.atomic import atomic_path
from medxai.volume import Step, Volume

_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError)


def read_nifti(path: str | Path) -> Volume:
    """Read a 3D NIfTI (or a 4D one with a single volume).

    The affine is nibabel's best affine: the sform when its code is set, else the qform, which is what
    viewers such as FSLeyes, ITK-SNAP (via ITK) and 3D Slicer show for well-formed files.
    """
    path = Path(path)
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except _READ_ERRORS as error:
        raise InvalidInputError(f"not a readable NIfTI file ({type(error).__name__}: {error})", path=path) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InvalidInputError(f"expected a 3D volume, found {data.ndim}D with shape {data.shape}", path=path)
    if min(data.shape) < 2:
        raise InvalidInputError(f"volume shape {data.shape} is a single slice, not a 3D volume", path=path)
    header = image.header
    metadata = {
        "source": path.name,
        "format": "nifti",
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
    }
    return Volume(data=data, affine=image.affine, metadata=metadata, history=(Step("read_nifti", {"file": path.name}),))


def write_nifti(volume: Volume, path: str | Path, *, dtype: np.dtype | type | None = None) -> Path:
    """Write ``volume`` atomically with its affine as both sform and qform (code 1, scanner)."""
    data = volume.data if dtype is None else volume.data.astype(dtype)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    image = nib.Nifti1Image(data, volume.affine)
    image.set_sform(volume.affine, code=1)
    image.set_qform(volume.affine, code=1)
    with atomic_path(path) as temporary:
        nib.save(image, str(temporary))
    return Path(path)
