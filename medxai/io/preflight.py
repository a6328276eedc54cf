"""Checks made on a scan before its voxels are read, so that a hostile or broken file costs one line.

Each check raises :class:`~medxai.errors.InvalidInputError` naming the file: special files (FIFO, devices,
sockets) are refused from ``os.stat`` without being opened; the size a header declares is compared with
the memory available and with what the file on disk can hold; voxel types and geometry (voxel size,
affine) are checked from the header, before any voxel is allocated.
"""
from __future__ import annotations

import errno
import os
import resource
import stat
from pathlib import Path

import numpy as np
import psutil

from medxai.errors import InvalidInputError

# deflate (gzip, zlib) cannot expand its input more than ~1032:1 (RFC 1951: one 258-byte match per ~2 bits),
# so a compressed file smaller than declared / 1032 cannot hold the voxels its header declares.
DEFLATE_MAX_RATIO = 1032
# Voxel sizes of medical images range from ~1 um (micro-CT, 3D microscopy) to a few cm (thick slices,
# scout stacks); a spacing outside 1 um .. 1 m is a unit error (e.g. metres) or a forged header.
MIN_SPACING_MM = 1e-3
MAX_SPACING_MM = 1e3
CGROUP_MEMORY = Path("/sys/fs/cgroup")  # cgroup v2: memory.max and memory.current of this container

_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_path(path: str | Path, *, folder_ok: bool = False) -> os.stat_result:
    """``os.stat`` of an input, refusing what cannot be read as a scan: a missing path, a dangling
    symlink or a symlink loop, an unreadable file, a folder (unless ``folder_ok``) and special files,
    which are never opened (a FIFO would block the reader forever)."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise InvalidInputError(_stat_problem(path, error), path=path) from None
    if stat.S_ISDIR(info.st_mode):
        if not folder_ok:
            raise InvalidInputError("is a folder, expected a file", path=path)
    elif not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _SPECIAL_FILES if test(info.st_mode)), "not a regular file")
        raise InvalidInputError(f"is {kind}, not a regular file: refused without reading it", path=path)
    if not os.access(path, os.R_OK | (os.X_OK if stat.S_ISDIR(info.st_mode) else 0)):
        raise InvalidInputError("permission denied (not readable)", path=path)
    return info


def _stat_problem(path: str | Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "symbolic link loop (too many levels of symbolic links)"
    if error.errno == errno.ENOENT:
        return "dangling symbolic link (its target does not exist)" if os.path.islink(path) else "no such file or folder"
    if error.errno == errno.EACCES:
        return "permission denied"
    return error.strerror or type(error).__name__


def available_memory() -> int:
    """Bytes this process can still allocate: the host's available memory (psutil), bounded by the
    container's cgroup v2 limit and by this process's address-space limit (RLIMIT_AS), which psutil ignores."""
    free = int(psutil.virtual_memory().available)
    try:
        limit = (CGROUP_MEMORY / "memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int((CGROUP_MEMORY / "memory.current").read_text()))
    except (OSError, ValueError):
        pass  # no cgroup v2 memory controller: the host figure stands
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        free = min(free, soft - psutil.Process().memory_info().vms)
    return max(free, 0)


def _gib(size: float) -> str:
    if size < 2**20:
        return f"{int(size)} bytes"
    return f"{size / 2**30:.1f} GiB" if size >= 2**28 else f"{size / 2**20:.1f} MiB"


def check_memory(path: str | Path, shape: tuple[int, ...], bytes_per_voxel: int, *, extra_bytes: int = 0) -> None:
    """Refuse a volume whose reading would not fit in memory: ``bytes_per_voxel`` is what reading holds
    per voxel (stored values and any scaled copy), ``extra_bytes`` what it holds besides (header extensions);
    a float32 copy, which every model and metric makes, is added as the margin."""
    voxels = int(np.prod([int(n) for n in shape], dtype=object))
    needed = voxels * (bytes_per_voxel + 4) + extra_bytes
    free = available_memory()
    if needed > free:
        dims = " x ".join(str(int(n)) for n in shape)
        raise InvalidInputError(
            f"header declares {dims} voxels: the volume would need {_gib(voxels * 4)} as float32 "
            f"({_gib(needed)} to read), only {_gib(free)} of memory is available", path=path)


def check_stored_size(path: str | Path, declared: int, on_disk: int, *, compressed: bool) -> None:
    """Refuse a file that cannot hold the ``declared`` bytes of its header: ``on_disk`` bytes of deflate
    expand at most :data:`DEFLATE_MAX_RATIO` times; uncompressed ones not at all (truncated or forged)."""
    ratio = DEFLATE_MAX_RATIO if compressed else 1
    if declared > on_disk * ratio:
        how = f"at most {_gib(on_disk * ratio)} once decompressed" if compressed else f"{on_disk} bytes"
        raise InvalidInputError(f"header declares {declared} bytes of voxel data but the file holds {how} "
                                f"(truncated or forged header)", path=path)


def check_shape(path: str | Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The 3D shape of a declared ``shape``: positive sizes, 3D or 4D with one volume, not a single slice."""
    if any(int(n) < 1 for n in shape):
        raise InvalidInputError(f"header declares a non-positive dimension (shape {tuple(int(n) for n in shape)})", path=path)
    shape = tuple(int(n) for n in shape)
    volume = shape[:3] if len(shape) == 4 and shape[3] == 1 else shape
    if len(volume) != 3:
        raise InvalidInputError(f"expected a 3D volume, found {len(shape)}D with shape {shape}", path=path)
    if min(volume) < 2:
        raise InvalidInputError(f"volume shape {volume} is a single slice, not a 3D volume", path=path)
    return volume  # type: ignore[return-value]


def check_voxel_type(path: str | Path, dtype: np.dtype, name: str | None = None) -> None:
    """Accept integer and real voxels; refuse 1-bit, complex, colour (structured) and extended-precision types
    with a hint (converting them would drop the imaginary part or colour, or guess)."""
    dtype = np.dtype(dtype)
    name = name or str(dtype)
    if dtype.kind in "iu" or (dtype.kind == "f" and dtype.itemsize <= 8):
        return
    if dtype.kind == "c" or "complex" in name:
        hint = "complex voxels: store the magnitude (or the real part) as a real-valued image"
    elif dtype.names or name.lower().startswith("rgb") or "vector" in name.lower():
        hint = "colour/vector voxels: expected one scalar per voxel"
    elif name == "binary":
        hint = "1-bit binary voxels: store masks as uint8"
    else:
        hint = "expected integer or real-valued voxels"
    raise InvalidInputError(f"voxel type {name} is not supported ({hint})", path=path)


def narrow_integers(path: str | Path, data: np.ndarray) -> np.ndarray:
    """64-bit integer voxels in the smallest integer type that holds their range (lossless, and writable to
    NIfTI and by every tool downstream); refused when the values need 64 bits."""
    if data.dtype.kind not in "iu" or data.dtype.itemsize < 8:
        return data
    low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return data.astype(dtype)
    raise InvalidInputError(f"{data.dtype} voxel values {low} .. {high} do not fit 32-bit integers", path=path)


def check_geometry(path: str | Path, affine: np.ndarray) -> None:
    """Refuse a non-finite or singular voxel-to-world affine and voxel sizes outside
    [:data:`MIN_SPACING_MM`, :data:`MAX_SPACING_MM`]."""
    affine = np.asarray(affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise InvalidInputError("the affine (voxel size, orientation or origin) holds NaN or infinite values", path=path)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    shown = " x ".join(f"{s:g}" for s in spacing)
    if spacing.min() == 0:
        raise InvalidInputError(f"voxel size {shown} mm has a zero dimension", path=path)
    if spacing.min() < MIN_SPACING_MM or spacing.max() > MAX_SPACING_MM:
        raise InvalidInputError(f"voxel size {shown} mm is outside {MIN_SPACING_MM:g} .. {MAX_SPACING_MM:g} mm "
                                f"(wrong units or a broken header)", path=path)
    # Direction cosines: |det| of the unit columns is 1 for an orthonormal grid, 0 for collinear axes.
    if abs(np.linalg.det(affine[:3, :3] / spacing)) < 1e-3:
        raise InvalidInputError("the affine is singular: its voxel axes are (nearly) parallel", path=path)


def check_inside(header: str | Path, reference: str) -> None:
    """Refuse a data file ``reference`` named by the detached ``header`` unless it lies inside the header's
    folder (no absolute path, no ``..``, no symlink leading out): reading it would leak another file."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(header)))
    target = os.path.realpath(os.path.join(folder, reference))
    lexical = not os.path.isabs(reference) and ".." not in Path(reference).parts
    if not lexical or os.path.commonpath([folder, target]) != folder:
        raise InvalidInputError(f"refers to a data file outside its folder ({reference!r}): refused", path=header)
