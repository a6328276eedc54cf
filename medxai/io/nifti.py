"""NIfTI reading and writing with nibabel, keeping the affine exactly."""
from __future__ import annotations

import contextlib
import logging
import warnings
import zlib
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np

from medxai.errors import InvalidInputError
from medxai.io.atomic import atomic_path
from medxai.io.preflight import (check_geometry, check_memory, check_path, check_shape, check_stored_size,
                                  check_voxel_type, narrow_integers)
from medxai.volume import Step, Volume

_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError,
                nib.spatialimages.HeaderDataError, nib.wrapstruct.WrapStructError)


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """Silence nibabel's warnings and the header fixes it logs (they would reach stderr through the root
    logger): the reader refuses or reads, in one line. Raising on errors does not depend on logging."""
    loggers = (logging.getLogger("nibabel"), nib.imageglobals.logger)
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _raw_header(path: Path) -> nib.Nifti1Header:
    """The header as stored (NIfTI-1 or -2, endianness guessed as nibabel does, none of its fixes applied),
    from the first 540 bytes only: neither the extensions (whose sizes are not checked yet) nor the voxels."""
    try:
        with _quiet_nibabel(), nib.openers.ImageOpener(str(path)) as handle:
            block = handle.read(nib.Nifti2Header.sizeof_hdr)
            for header_class in (nib.Nifti1Header, nib.Nifti2Header):
                header = header_class(block[:header_class.sizeof_hdr], check=False)
                if int(header["sizeof_hdr"]) == header_class.sizeof_hdr:
                    return header
    except _READ_ERRORS as error:
        raise InvalidInputError(f"not a readable NIfTI file ({type(error).__name__}: {error})", path=path) from None
    raise InvalidInputError("not a NIfTI file (no valid NIfTI-1 or NIfTI-2 header: sizeof_hdr or dim[0] out of range)",
                            path=path)


def _check_header(path: Path, header: nib.Nifti1Header, on_disk: int) -> None:
    """Shape, voxel type, scaling, geometry and declared size, from the header alone (before any voxel is read)."""
    dim = [int(n) for n in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise InvalidInputError(f"header declares {dim[0]} dimensions (NIfTI allows 1 to 7)", path=path)
    shape = check_shape(path, tuple(dim[1:dim[0] + 1]))
    code = int(header["datatype"])
    if code not in nib.nifti1.data_type_codes.code:  # nibabel's table of the NIfTI datatypes
        raise InvalidInputError(f"unknown NIfTI datatype code {code}", path=path)
    check_voxel_type(path, header.get_data_dtype(), nib.nifti1.data_type_codes.label[code])
    slope, intercept = float(header["scl_slope"]), float(header["scl_inter"])
    # nibabel reads an infinite slope as "no scaling" (and a NaN intercept of a set slope as 0): refuse both.
    if np.isinf(slope) or (np.isfinite(slope) and slope != 0 and not np.isfinite(intercept)):
        raise InvalidInputError(f"invalid intensity scaling (scl_slope {slope:g}, scl_inter {intercept:g})", path=path)
    check_geometry(path, _best_affine(path, header))
    offset = float(header["vox_offset"])
    if not np.isfinite(offset) or offset < 0:
        raise InvalidInputError(f"invalid vox_offset {offset:g}", path=path)
    itemsize = header.get_data_dtype().itemsize
    declared = int(offset) + int(np.prod(shape, dtype=object)) * itemsize
    check_stored_size(path, declared, on_disk, compressed=path.name.lower().endswith(".gz"))
    scaled = header.get_slope_inter() not in ((None, None), (1.0, 0.0))
    # Scaled values are float64 in nibabel; the extensions before vox_offset are read into memory too.
    check_memory(path, shape, itemsize + (8 if scaled else 0), extra_bytes=int(offset))


def _check_extensions(path: Path, header: nib.Nifti1Header) -> None:
    """Header extensions must lie between the header and ``vox_offset``: nibabel allocates what an ``esize``
    claims, so a forged one would cost GiBs. (A size that is not a multiple of 16, as the standard asks, is
    tolerated as nibabel tolerates it.) Written by hand: nibabel does not bound the extensions by ``vox_offset``."""
    start, end = int(header.sizeof_hdr), int(float(header["vox_offset"]))
    if path.name.lower().endswith((".hdr", ".img")) or end <= start:
        return  # no room for extensions (or a detached header, where vox_offset counts into the .img)
    endian = "<" if header.endianness == "<" else ">"
    with _quiet_nibabel(), nib.openers.ImageOpener(str(path)) as handle:
        handle.seek(start)
        block = handle.read(min(end, start + 4) - start)
        if len(block) < 4 or block[0] == 0:
            return  # no extension flag: nibabel reads none
        position = start + 4
        while end - position >= 16:  # nibabel's own loop condition
            head = handle.read(8)
            if len(head) < 8:
                break
            size = int(np.frombuffer(head[:4], dtype=f"{endian}i4")[0])
            if size < 8 or position + size > end:
                raise InvalidInputError(f"header extension at byte {position} claims {size} bytes, beyond the voxel "
                                        f"data offset {end} (a corrupt or forged header)", path=path)
            handle.seek(position + size)
            position += size


def _best_affine(path: Path, header: nib.Nifti1Header) -> np.ndarray:
    """nibabel's best affine after its own header fixes (qfac, negative pixdims), refusing the one fix that
    invents geometry: a zero voxel size in the pixdims the affine is built from (nibabel makes it 1 mm)."""
    pixdims = np.asarray(header["pixdim"][1:4], dtype=np.float64)
    if int(header["sform_code"]) == 0 and np.any(pixdims == 0):
        raise InvalidInputError(f"voxel size {' x '.join(f'{v:g}' for v in pixdims)} mm has a zero dimension", path=path)
    fixed = header.copy()
    try:
        with _quiet_nibabel():
            fixed.check_fix(error_level=50)  # fixes only; the problems that matter are refused by our own checks
            return fixed.get_best_affine()
    except nib.spatialimages.HeaderDataError as error:
        raise InvalidInputError(f"invalid NIfTI header ({error})", path=path) from None


def read_nifti(path: str | Path) -> Volume:
    """Read a 3D NIfTI (or a 4D one with a single volume), checking its header before any voxel is read.

    The affine is nibabel's best affine: the sform when its code is set, else the qform, which is what
    viewers such as FSLeyes, ITK-SNAP (via ITK) and 3D Slicer show for well-formed files. 64-bit integer
    voxels are narrowed losslessly (:func:`~medxai.io.preflight.narrow_integers`).
    """
    path = Path(path)
    info = check_path(path)
    header = _raw_header(path)
    _check_header(path, header, info.st_size)
    _check_extensions(path, header)
    try:
        with _quiet_nibabel():
            image = nib.load(str(path))
            data = np.asanyarray(image.dataobj)
    except _READ_ERRORS as error:
        raise InvalidInputError(f"not a readable NIfTI file ({type(error).__name__}: {error})", path=path) from None
    if data.ndim == 4:
        data = data[..., 0]
    header = image.header
    metadata = {
        "source": path.name,
        "format": "nifti",
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
    }
    return Volume(data=narrow_integers(path, data), affine=image.affine, metadata=metadata,
                  history=(Step("read_nifti", {"file": path.name}),))


def write_nifti(volume: Volume, path: str | Path, *, dtype: np.dtype | type | None = None) -> Path:
    """Write ``volume`` atomically with its affine as both sform and qform (code 1, scanner)."""
    data = volume.data if dtype is None else volume.data.astype(dtype)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    image = nib.Nifti1Image(data, volume.affine, dtype=data.dtype)  # explicit: nibabel refuses int64 otherwise
    image.set_sform(volume.affine, code=1)
    image.set_qform(volume.affine, code=1)
    with atomic_path(path) as temporary:
        nib.save(image, str(temporary))
    return Path(path)
