"""The hostile-input corpus of issue 24: each kind builds its own bad input in a fresh folder and states what
the real CLI must do with it (``test_corpus.py`` runs every kind in a subprocess under memory, file-size
and time limits and checks the one-line-error contract).

A kind is a function ``(root, shared) -> Attempt`` registered with :func:`kind` under an owner:
``model`` (model loading and trust), ``readers`` (scan readers), ``outputs`` (case ids, output layout,
YAML, Ctrl-C) or ``radiomics``. Inputs are tiny (<= 48^3); big volumes exist only as headers that lie.
A file made unreadable with chmod 000 is not a kind: the suite may run as root, whom modes do not stop;
``dangling_symlink`` covers a scan that cannot be opened, ``convert_output_folder_read_only`` an unwritable OUT.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pydicom

from medxai.testing.dicom_writer import write_dicom_series
from medxai.volume import Volume

OWNERS = ("model", "readers", "outputs", "radiomics")
SECRET = "HOSTILE-SECRET-5e1f9c-hunter2"  # a line that must never be echoed from a foreign file
# An oblique, anisotropic, LPS-like grid: the good inputs are never identity-affine.
AFFINE = np.array([[0.0, 0.0, 2.0, -20.0], [-0.9, 0.0, 0.0, 15.0], [0.0, -0.9, 0.0, 30.0], [0, 0, 0, 1]])
NETWORK_DEF = {"_target_": "Classifier", "in_shape": [1, 16, 16, 16], "classes": "@num_classes",
               "channels": [4, 8], "strides": [2, 2]}


@dataclass(frozen=True)
class Shared:
    """Good inputs built once per session (see ``build_shared``)."""

    root: Path
    scans: tuple[Path, ...]   # three good NIfTI phantoms (24^3)
    lesion: Path              # a phantom with a lesion ...
    lesion_mask: Path         # ... and its mask on the same grid
    model: Path               # a medxai model folder (tiny untrained CNN, 16^3 input)
    torchscript: Path         # the same network as TorchScript
    bundle_weights: Path      # a plain state dict of NETWORK_DEF's Classifier (weights_only-loadable)
    gzip_bomb: Path           # ~1 MB .nii.gz whose header and stream both hold a 1024^3 uint8 volume
    gzip_trailing: Path       # a 16^3 .nii.gz whose gzip stream goes on for 256 MiB more


@dataclass
class Attempt:
    """One CLI invocation (``medxai ARGS``) and what must come of it."""

    args: list[str]
    outs: tuple[Path, ...]               # where the command may write (the first is OUT)
    names: tuple[str, ...] = ()          # the error line must contain one of these (the offending file)
    expect: frozenset[int] = frozenset({4})
    failed: str | None = None            # batch: the case id that must fail while the others are done
    marker: Path | None = None           # code-execution kinds: must never be created
    secret: str | None = None            # must never appear on stdout or stderr
    fsize: int | None = None             # RLIMIT_FSIZE in bytes (full disk)
    interrupt_when: Path | None = None   # send SIGINT to the process group once this path exists
    timeout: float = 60.0
    setup: tuple[list[str], ...] = ()    # runs that must succeed first; their outputs must survive the attempt
    followups: tuple[list[str], ...] = ()  # runs after the attempt, held to the same expectations
    untouched: tuple[Path, ...] = ()     # files whose bytes must not change
    check: Callable[[Attempt, Outcome], None] | None = None  # more assertions on the outcome


@dataclass(frozen=True)
class Outcome:
    """What one CLI run gave."""

    code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Kind:
    name: str
    owner: str
    build: Callable[[Path, Shared], Attempt]


KINDS: dict[str, Kind] = {}


def kind(owner: str) -> Callable[[Callable[[Path, Shared], Attempt]], Callable[[Path, Shared], Attempt]]:
    assert owner in OWNERS
    def register(build: Callable[[Path, Shared], Attempt]) -> Callable[[Path, Shared], Attempt]:
        KINDS[build.__name__] = Kind(build.__name__, owner, build)
        return build
    return register


# ---------------------------------------------------------------- shared good inputs

def build_shared(root: Path) -> Shared:
    """Phantoms, a tiny model in every format and the two gzip bombs (torch is imported here, once)."""
    import torch
    from monai.networks.nets import Classifier

    from medxai.models.model_dir import save_model_dir
    from medxai.models.preprocessing import PreprocessingConfig
    from medxai.models.registry import build_network
    from medxai.synthetic import make_cohort

    labels = make_cohort(root / "cohort", cases=4, seed=3, size=24, grid_mix=False)
    rows = list(csv.DictReader(labels.open(newline="")))
    scans = tuple(labels.parent / row["image"] for row in rows)
    lesion_row = next(row for row in rows if row["mask"])
    torch.manual_seed(0)
    network = build_network("tiny", in_channels=1, num_classes=2, spatial_size=(16, 16, 16)).eval()
    save_model_dir(root / "model", network=network, arch="tiny", classes=["lesion", "normal"], task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=(16, 16, 16)), training={"seeded": 0}, metrics={})
    torch.jit.save(torch.jit.script(network), str(root / "model.ts"))
    classifier = Classifier(in_shape=(1, 16, 16, 16), classes=2, channels=(4, 8), strides=(2, 2))
    torch.save(classifier.state_dict(), root / "bundle_weights.pt")
    return Shared(
        root=root, scans=scans[:3], lesion=labels.parent / lesion_row["image"],
        lesion_mask=labels.parent / lesion_row["mask"], model=root / "model", torchscript=root / "model.ts",
        bundle_weights=root / "bundle_weights.pt",
        gzip_bomb=_gzip_stream(root / "gzip_bomb.nii.gz", _header((1024, 1024, 1024), np.uint8), 1 << 30),
        gzip_trailing=_gzip_stream(root / "gzip_trailing.nii.gz", _header((16, 16, 16), np.float32), 256 << 20),
    )


def _header(shape: tuple[int, ...], dtype: type, affine: np.ndarray = AFFINE) -> bytes:
    """A NIfTI-1 single-file header (+ 4 empty extension bytes) claiming ``shape`` of ``dtype``."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header["vox_offset"] = 352
    return header.binaryblock + b"\0" * 4


def _gzip_stream(path: Path, head: bytes, zeros: int) -> Path:
    """``head`` then ``zeros`` zero bytes as a multi-member gzip (one member per 16 MiB, compressed once,
    as gzip allows): ~1 KB on disk per MiB inflated, written in milliseconds."""
    chunk = 16 << 20
    member = gzip.compress(bytes(chunk), compresslevel=9)
    path.write_bytes(gzip.compress(head) + member * (zeros // chunk))
    return path


# ---------------------------------------------------------------- small builders

def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _raw_nifti(path: Path, header: nib.Nifti1Header, payload: bytes) -> Path:
    """Header bytes written as they are (nibabel would refuse to save them); gzipped for ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = header.binaryblock + b"\0" * 4 + payload
    path.write_bytes(gzip.compress(blob) if path.name.endswith(".gz") else blob)
    return path


def _header_with(shape: tuple[int, ...], dtype: type, **fields: object) -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_sform(AFFINE, code=1)
    header.set_qform(AFFINE, code=1)
    header["vox_offset"] = 352
    for key, value in fields.items():
        header[key] = value
    return header


def _noise(shape: tuple[int, ...] = (12, 11, 10), dtype: type = np.float32) -> np.ndarray:
    return (np.random.default_rng(0).random(shape) * 400).astype(dtype)


def _sform_nifti(path: Path, sform: np.ndarray) -> Path:
    """A 12x11x10 float volume whose sform is ``sform`` and whose qform is absent (pixdim as given)."""
    data = _noise()
    header = _header_with(data.shape, np.float32)
    header.set_qform(None, code=0)
    header["srow_x"], header["srow_y"], header["srow_z"] = sform[0], sform[1], sform[2]
    header["sform_code"] = 1
    header["pixdim"][1:4] = [np.linalg.norm(sform[:3, i]) if np.isfinite(sform[:3, i]).all() else np.nan for i in range(3)]
    return _raw_nifti(path, header, data.tobytes())


def _series(folder: Path, slices: int = 6) -> list[Path]:
    volume = Volume(np.random.default_rng(0).integers(0, 500, size=(10, 9, slices)).astype(np.int16), AFFINE)
    return write_dicom_series(volume, folder, shuffle_seed=None)


def _edit_dicom(path: Path, change: Callable[[pydicom.Dataset], None]) -> None:
    dataset = pydicom.dcmread(path)
    change(dataset)
    dataset.save_as(path)


def _pipeline(root: Path, text: str = "name: hostile\n", name: str = "pipeline.yaml") -> Path:
    path = root / name
    path.write_text(text)
    return path


def _scan_folder(root: Path, shared: Shared, name: str = "in") -> Path:
    folder = root / name
    for index, scan in enumerate(shared.scans):
        _copy(scan, folder / f"good_{index}.nii.gz")
    return folder


def _manifest(path: Path, rows: list[dict[str, str]], **writer: object) -> Path:
    with path.open("w", newline="", encoding=str(writer.pop("encoding", "utf-8"))) as handle:
        table = csv.DictWriter(handle, fieldnames=list(rows[0]), **writer)  # type: ignore[arg-type]
        table.writeheader()
        table.writerows(rows)
    return path


def _good_manifest_rows(root: Path, shared: Shared) -> list[dict[str, str]]:
    return [{"case_id": f"good_{i}", "image": str(_copy(scan, root / "images" / f"good_{i}.nii.gz").relative_to(root))}
            for i, scan in enumerate(shared.scans)]


def _touch_command(marker: Path) -> str:
    return f"touch {marker}"


def _run_args(pipeline: Path, source: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(pipeline), "--input", str(source), "-o", str(out), *extra]


def read_manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def case_dirs(out: Path) -> list[Path]:
    """Every folder under OUT (case folders wherever the layout puts them)."""
    return [p for p in out.rglob("*") if p.is_dir()]


# ---------------------------------------------------------------- checks shared by kinds

def _run_record_intact(out: Path) -> None:
    assert (out / "run.json").is_file(), "OUT/run.json must stay the run record (a file)"
    json.loads((out / "run.json").read_text())
    rows = read_manifest(out)
    assert rows and all(row["status"] == "done" for row in rows), rows


def _all_done(attempt: Attempt, result: Outcome) -> None:
    _run_record_intact(attempt.outs[0])


def _names_are_safe(attempt: Attempt, result: Outcome) -> None:
    _run_record_intact(attempt.outs[0])
    for folder in case_dirs(attempt.outs[0]):
        name = folder.name
        assert name.isprintable() and not name.startswith(".") or name.startswith(".medxai"), repr(name)


def _records_input(source: Path, out: Path) -> Callable[[Attempt, Outcome], None]:
    """When a second same-named input is accepted, its outputs go elsewhere and say which input they came from."""
    def check(attempt: Attempt, result: Outcome) -> None:
        if result.code == 0:
            texts = [p.read_text(errors="replace") for p in out.rglob("*") if p.suffix in (".json", ".csv") and p.is_file()]
            assert any(str(source) in text for text in texts), f"no output under {out} records its input {source}"
    return check


def _output_exists(attempt: Attempt, result: Outcome) -> None:
    out = attempt.outs[0]
    assert out.exists() and (out.is_file() or any(out.rglob("*.nii.gz")) or any(out.rglob("*.csv"))), "no output written"


# ---------------------------------------------------------------- scan readers: header and size bombs

@kind("readers")
def nifti_header_bomb_1500(root: Path, shared: Shared) -> Attempt:
    """A 79-byte .nii.gz whose header claims 1500^3 float32 (13 GB)."""
    scan = root / "bomb1500.nii.gz"
    scan.write_bytes(gzip.compress(_header((1500, 1500, 1500), np.float32)))
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def nifti_header_bomb_4000(root: Path, shared: Shared) -> Attempt:
    scan = root / "bomb4000.nii.gz"
    scan.write_bytes(gzip.compress(_header((4000, 4000, 4000), np.float32)))
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def nifti_gzip_bomb_declared(root: Path, shared: Shared) -> Attempt:
    """1 MB on disk, 1 GiB declared and really in the stream: compressed size against declared size."""
    scan = _copy(shared.gzip_bomb, root / "inflates.nii.gz")
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def nifti_gzip_trailing_bomb(root: Path, shared: Shared) -> Attempt:
    """The header says 16^3 but the gzip stream inflates to 256 MiB more: read what is declared, or refuse."""
    scan = _copy(shared.gzip_trailing, root / "trailing.nii.gz")
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,), expect=frozenset({0, 4}))


@kind("readers")
def nrrd_header_bomb(root: Path, shared: Shared) -> Attempt:
    scan = root / "huge.nrrd"
    scan.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 4000 4000 4000\nencoding: raw\nendian: little\n"
                     b"space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
                     b"space origin: (0,0,0)\n\n" + bytes(64))
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def mha_header_bomb(root: Path, shared: Shared) -> Attempt:
    scan = root / "huge.mha"
    scan.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 4000 4000 4000\nElementSpacing = 1 1 1\n"
                     b"ElementType = MET_FLOAT\nElementDataFile = LOCAL\n" + bytes(64))
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def dicom_header_bomb(root: Path, shared: Shared) -> Attempt:
    """A multi-frame DICOM claiming 4096 frames of 4096 x 4096 (128 GiB) with a few bytes of pixel data."""
    paths = _series(root / "series")
    for extra in paths[1:]:
        extra.unlink()

    def inflate(dataset: pydicom.Dataset) -> None:
        dataset.Rows, dataset.Columns, dataset.NumberOfFrames = 4096, 4096, 4096
    _edit_dicom(paths[0], inflate)
    return Attempt(["info", str(root / "series")], (root / "result_out",), names=("series", paths[0].name))


# ---------------------------------------------------------------- scan readers: special files

@kind("readers")
def fifo_info(root: Path, shared: Shared) -> Attempt:
    scan = root / "pipe.nii.gz"
    os.mkfifo(scan)
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,), timeout=20)


@kind("readers")
def fifo_convert(root: Path, shared: Shared) -> Attempt:
    scan = root / "pipe.nii.gz"
    os.mkfifo(scan)
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,), timeout=20)


@kind("readers")
def dev_null_as_scan(root: Path, shared: Shared) -> Attempt:
    return Attempt(["info", "/dev/null"], (root / "result_out",), names=("/dev/null",), timeout=20)


@kind("readers")
def char_device_named_nii(root: Path, shared: Shared) -> Attempt:
    """``zero.nii`` is a symlink to /dev/zero: refused without reading it."""
    scan = root / "zero.nii"
    scan.symlink_to("/dev/zero")
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name, "/dev/zero"), timeout=20)


@kind("readers")
def directory_named_nii(root: Path, shared: Shared) -> Attempt:
    scan = root / "scan.nii.gz"
    scan.mkdir()
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def dangling_symlink(root: Path, shared: Shared) -> Attempt:
    scan = root / "gone.nii.gz"
    scan.symlink_to(root / "never-written.nii.gz")
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def mhd_data_file_etc_passwd(root: Path, shared: Shared) -> Attempt:
    scan = root / "passwd.mhd"
    scan.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 2\nElementSpacing = 1 1 1\n"
                    "ElementType = MET_UCHAR\nElementDataFile = /etc/passwd\n")
    out = root / "result_out"
    first = Path("/etc/passwd").read_text().splitlines()[0]
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,), secret=first)


@kind("readers")
def mhd_data_file_parent_dir(root: Path, shared: Shared) -> Attempt:
    (root / "outside.raw").write_bytes(bytes(range(32)))
    scan = root / "header" / "escape.mhd"
    scan.parent.mkdir()
    scan.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 2\nElementSpacing = 1 1 1\n"
                    "ElementType = MET_UCHAR\nElementDataFile = ../outside.raw\n")
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


# ---------------------------------------------------------------- scan readers: malformed NIfTI

@kind("readers")
def nifti_zero_bytes(root: Path, shared: Shared) -> Attempt:
    scan = root / "empty.nii.gz"
    scan.write_bytes(b"")
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def nifti_random_bytes(root: Path, shared: Shared) -> Attempt:
    scan = root / "noise.nii.gz"
    scan.write_bytes(np.random.default_rng(1).bytes(3000))
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def nifti_random_bytes_gzipped(root: Path, shared: Shared) -> Attempt:
    scan = root / "noise.nii.gz"
    scan.write_bytes(gzip.compress(np.random.default_rng(2).bytes(3000)))
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def nifti_truncated_gzip(root: Path, shared: Shared) -> Attempt:
    scan = _copy(shared.scans[0], root / "cut.nii.gz")
    scan.write_bytes(scan.read_bytes()[: scan.stat().st_size // 2])
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def nifti_vox_offset_past_end(root: Path, shared: Shared) -> Attempt:
    data = _noise()
    scan = _raw_nifti(root / "offset.nii", _header_with(data.shape, np.float32, vox_offset=1 << 20), data.tobytes())
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def nifti_bool_convert(root: Path, shared: Shared) -> Attempt:
    header = _header_with((12, 11, 10), np.uint8, datatype=1, bitpix=1)
    scan = _raw_nifti(root / "flags.nii.gz", header, bytes(12 * 11 * 10))
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def nifti_negative_dimension(root: Path, shared: Shared) -> Attempt:
    header = _header_with((12, 11, 10), np.float32)
    header["dim"][2] = -11
    scan = _raw_nifti(root / "negdim.nii.gz", header, _noise().tobytes())
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def nifti_seven_dimensions(root: Path, shared: Shared) -> Attempt:
    scan = _nifti(root / "sevend.nii.gz", _noise((4, 4, 4, 2, 2, 2, 2)))
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def nifti_2d(root: Path, shared: Shared) -> Attempt:
    scan = _nifti(root / "flat.nii.gz", _noise((16, 16)), np.eye(4))
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def nifti_4d_multivolume(root: Path, shared: Shared) -> Attempt:
    scan = _nifti(root / "timeseries.nii.gz", _noise((12, 11, 10, 3)))
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def nifti_int64_convert(root: Path, shared: Shared) -> Attempt:
    """int64 voxels beyond float32's exact range: converted exactly, or refused in one line."""
    data = (np.arange(12 * 11 * 10, dtype=np.int64).reshape(12, 11, 10) * (1 << 33) + 1)
    scan = root / "wide.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE, dtype=np.int64), str(scan))
    out = root / "result_out"

    def exact(attempt: Attempt, result: Outcome) -> None:
        if result.code == 0:
            [written] = list(out.rglob("*.nii.gz"))
            assert np.array_equal(np.asanyarray(nib.load(written).dataobj), data), "int64 values changed by convert"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,), expect=frozenset({0, 4}), check=exact)


@kind("readers")
def nifti_complex64_convert(root: Path, shared: Shared) -> Attempt:
    data = _noise() + 1j * _noise()
    scan = root / "complex.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.complex64), AFFINE), str(scan))
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def nifti_nan_voxels(root: Path, shared: Shared) -> Attempt:
    data = _noise()
    data[3, 4, 5] = np.nan
    scan = _nifti(root / "holes.nii.gz", data)
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def nifti_inf_voxels(root: Path, shared: Shared) -> Attempt:
    data = _noise()
    data[1, 2, 3] = np.inf
    scan = _nifti(root / "infinite.nii.gz", data)
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def nifti_scl_slope_inf(root: Path, shared: Shared) -> Attempt:
    header = _header_with((12, 11, 10), np.int16, scl_slope=np.inf, scl_inter=0)
    scan = _raw_nifti(root / "slope.nii.gz", header, _noise(dtype=np.int16).tobytes())
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def affine_zero_voxel_size(root: Path, shared: Shared) -> Attempt:
    sform = AFFINE.copy()
    sform[:3, 1] = 0.0
    scan = _sform_nifti(root / "zerovox.nii.gz", sform)
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def affine_nan_voxel_size(root: Path, shared: Shared) -> Attempt:
    sform = AFFINE.copy()
    sform[:3, 0] = np.nan
    scan = _sform_nifti(root / "nanvox.nii.gz", sform)
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def affine_inf_voxel_size(root: Path, shared: Shared) -> Attempt:
    sform = AFFINE.copy()
    sform[:3, 2] = [0.0, 0.0, np.inf]
    scan = _sform_nifti(root / "infvox.nii.gz", sform)
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def affine_singular(root: Path, shared: Shared) -> Attempt:
    """Two voxel axes along the same world direction: non-zero sizes, determinant zero."""
    sform = AFFINE.copy()
    sform[:3, 1] = sform[:3, 0] * 1.5
    scan = _sform_nifti(root / "singular.nii.gz", sform)
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


# ---------------------------------------------------------------- scan readers: DICOM

@kind("readers")
def dicom_truncated_pixel_data(root: Path, shared: Shared) -> Attempt:
    paths = _series(root / "series")
    paths[2].write_bytes(paths[2].read_bytes()[:-40])
    out = root / "result_out"
    return Attempt(["convert", str(root / "series"), "-o", str(out)], (out,), names=("series", paths[2].name))


@kind("readers")
def dicom_missing_slice(root: Path, shared: Shared) -> Attempt:
    _series(root / "series")[3].unlink()
    return Attempt(["info", str(root / "series")], (root / "result_out",), names=("series",))


@kind("readers")
def dicom_random_bytes_named_dcm(root: Path, shared: Shared) -> Attempt:
    folder = root / "series"
    folder.mkdir()
    for index in range(3):
        (folder / f"im_{index}.dcm").write_bytes(np.random.default_rng(index).bytes(2000))
    return Attempt(["info", str(folder)], (root / "result_out",), names=("series",))


def _empty_sop_class(folder: Path) -> None:
    def blank(dataset: pydicom.Dataset) -> None:
        dataset.SOPClassUID = ""
    for path in _series(folder):
        _edit_dicom(path, blank)


@kind("readers")
def dicom_empty_sop_class_info(root: Path, shared: Shared) -> Attempt:
    """An anonymised series with an empty SOPClassUID (TotalSegmentator's example CT): must simply work."""
    _empty_sop_class(root / "series")
    return Attempt(["info", str(root / "series")], (root / "result_out",), expect=frozenset({0}))


@kind("readers")
def dicom_empty_sop_class_convert(root: Path, shared: Shared) -> Attempt:
    _empty_sop_class(root / "series")
    out = root / "result_out"
    return Attempt(["convert", str(root / "series"), "-o", str(out)], (out,), expect=frozenset({0}), check=_output_exists)


@kind("readers")
def dicom_folder_with_fifo(root: Path, shared: Shared) -> Attempt:
    """A good series plus a FIFO named like a slice: skipped or refused, never read (no hang)."""
    _series(root / "series")
    os.mkfifo(root / "series" / "im_9999.dcm")
    return Attempt(["info", str(root / "series")], (root / "result_out",), names=("im_9999.dcm", "series"),
                   expect=frozenset({0, 4}), timeout=20)


@kind("readers")
def dicom_series_description_traversal(root: Path, shared: Shared) -> Attempt:
    """Tags name the output files of convert: ``../`` and a newline in SeriesDescription stay inside OUT."""
    def hostile(dataset: pydicom.Dataset) -> None:
        dataset.SeriesDescription = "../../escaped\nname"
        dataset.ProtocolName = "../../escaped"
    for path in _series(root / "series"):
        _edit_dicom(path, hostile)
    out = root / "result_out"

    def safe_names(attempt: Attempt, result: Outcome) -> None:
        written = [p for p in out.rglob("*") if p.is_file()]
        assert written and all(p.name.isprintable() and ".." not in p.name for p in written), written
    return Attempt(["convert", str(root / "series"), "-o", str(out)], (out,), expect=frozenset({0}), check=safe_names)


@kind("readers")
def symlink_to_fifo_elsewhere(root: Path, shared: Shared) -> Attempt:
    os.mkfifo(root / "queue")
    scan = root / "scan.nii.gz"
    scan.symlink_to(root / "queue")
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name, "queue"), timeout=20)


def _nhdr(root: Path, data_file: str) -> Path:
    scan = root / "header" / "detached.nhdr"
    scan.parent.mkdir()
    scan.write_text("NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4 2\nencoding: raw\n"
                    "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
                    f"space origin: (0,0,0)\ndata file: {data_file}\n")
    return scan


@kind("readers")
def nhdr_data_file_etc_passwd(root: Path, shared: Shared) -> Attempt:
    scan = _nhdr(root, "/etc/passwd")
    out = root / "result_out"
    first = Path("/etc/passwd").read_text().splitlines()[0]
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,), secret=first)


@kind("readers")
def nhdr_data_file_parent_dir(root: Path, shared: Shared) -> Attempt:
    (root / "outside.raw").write_bytes(bytes(range(32)))
    scan = _nhdr(root, "../outside.raw")
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def nifti_rgb24_convert(root: Path, shared: Shared) -> Attempt:
    """Datatype RGB24 (128): a structured voxel type no scan reader should pass on as a volume."""
    header = _header_with((8, 8, 8), np.uint8, datatype=128, bitpix=24)
    scan = _raw_nifti(root / "colour.nii.gz", header, np.random.default_rng(3).bytes(8 * 8 * 8 * 3))
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def nifti_dim0_invalid(root: Path, shared: Shared) -> Attempt:
    header = _header_with((12, 11, 10), np.float32)
    header["dim"][0] = 9
    scan = _raw_nifti(root / "dims9.nii.gz", header, _noise().tobytes())
    return Attempt(["info", str(scan)], (root / "result_out",), names=(scan.name,))


@kind("readers")
def nifti_extension_size_huge(root: Path, shared: Shared) -> Attempt:
    """A header extension claiming 2 GiB (esize) in a 6 KB file."""
    data = _noise()
    header = _header_with(data.shape, np.float32, vox_offset=352 + 16)
    blob = header.binaryblock + b"\x01\0\0\0" + struct.pack("<ii", (1 << 31) - 16, 0) + bytes(8) + data.tobytes()
    scan = root / "extension.nii.gz"
    scan.write_bytes(gzip.compress(blob))
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(scan.name,))


@kind("readers")
def dicom_zero_pixel_spacing(root: Path, shared: Shared) -> Attempt:
    def flatten(dataset: pydicom.Dataset) -> None:
        dataset.PixelSpacing = [0, 0]
    for path in _series(root / "series"):
        _edit_dicom(path, flatten)
    return Attempt(["info", str(root / "series")], (root / "result_out",), names=("series",))


@kind("readers")
def dicom_zero_orientation(root: Path, shared: Shared) -> Attempt:
    def degenerate(dataset: pydicom.Dataset) -> None:
        dataset.ImageOrientationPatient = [0, 0, 0, 0, 0, 0]
    for path in _series(root / "series"):
        _edit_dicom(path, degenerate)
    out = root / "result_out"
    return Attempt(["convert", str(root / "series"), "-o", str(out)], (out,), names=("series",))


# ---------------------------------------------------------------- scan readers: masks

def _mask_pair(root: Path, transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> tuple[Path, Path]:
    data = _noise()
    mask = np.zeros(data.shape, np.uint8)
    mask[3:7, 2:8, 4:9] = 1
    image = _nifti(root / "image.nii.gz", data)
    values, affine = transform(mask, AFFINE)
    return image, _nifti(root / "labels.nii.gz", values, affine)


@kind("readers")
def mask_permuted_axes_same_world_grid(root: Path, shared: Shared) -> Attempt:
    """The mask stores the same voxels with axes (j, k, i): the same world grid, reoriented exactly."""
    image, mask = _mask_pair(root, lambda m, a: (np.transpose(m, (1, 2, 0)).copy(), a[:, [1, 2, 0, 3]]))
    return Attempt(["info", str(image), "--mask", str(mask)], (root / "result_out",), expect=frozenset({0}))


@kind("readers")
def mask_flipped_axis_same_world_grid(root: Path, shared: Shared) -> Attempt:
    """LAS mask on an LPS-like image: axis 0 flipped, origin moved to the other end: same world grid."""
    def flip(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flipped = affine.copy()
        flipped[:3, 0] = -affine[:3, 0]
        flipped[:3, 3] = affine[:3, 3] + affine[:3, 0] * (mask.shape[0] - 1)
        return mask[::-1].copy(), flipped
    image, mask = _mask_pair(root, flip)
    return Attempt(["info", str(image), "--mask", str(mask)], (root / "result_out",), expect=frozenset({0}))


@kind("readers")
def mask_mismatched_grid(root: Path, shared: Shared) -> Attempt:
    image, mask = _mask_pair(root, lambda m, a: (m[:, :, :-1].copy(), a))
    return Attempt(["info", str(image), "--mask", str(mask)], (root / "result_out",), names=(mask.name,))


@kind("readers")
def newline_in_file_name(root: Path, shared: Shared) -> Attempt:
    """A legal (if odd) file name: works, and nothing it prints is split by the newline."""
    scan = _copy(shared.scans[0], root / "two\nlines.nii.gz")
    return Attempt(["info", str(scan)], (root / "result_out",), expect=frozenset({0}))


# ---------------------------------------------------------------- outputs (single-scan commands)

@kind("outputs")
def convert_output_is_existing_file(root: Path, shared: Shared) -> Attempt:
    scan = _copy(shared.scans[0], root / "scan.nii.gz")
    target = root / "taken.txt"
    target.write_text("keep me\n")
    return Attempt(["convert", str(scan), "-o", str(target)], (root / "result_out",), names=(target.name,), untouched=(target,))


@kind("outputs")
def convert_output_folder_read_only(root: Path, shared: Shared) -> Attempt:
    """An output folder that cannot be written: chmod 555 as a user; as root (who ignores modes) a folder
    under /sys, where nobody may create anything."""
    scan = _copy(shared.scans[0], root / "scan.nii.gz")
    if os.geteuid() == 0:
        out = Path("/sys/fs/medxai-hostile-out")
    else:
        out = root / "result_out"
        out.mkdir()
        out.chmod(0o555)
    return Attempt(["convert", str(scan), "-o", str(out)], (root / "result_out",), names=(out.name,))


@kind("outputs")
def convert_full_disk(root: Path, shared: Shared) -> Attempt:
    """Writes fail with EFBIG past 64 KiB (RLIMIT_FSIZE, SIGXFSZ ignored): one line naming OUT, nothing left."""
    scan = _nifti(root / "noisy.nii.gz", _noise((48, 48, 48)))
    out = root / "result_out"
    return Attempt(["convert", str(scan), "-o", str(out)], (out,), names=(out.name,), fsize=64 << 10)


@kind("outputs")
def convert_same_file_name_twice(root: Path, shared: Shared) -> Attempt:
    """a/scan.nii.gz then b/scan.nii.gz into one folder: the second never silently replaces the first."""
    first = _copy(shared.scans[0], root / "a" / "scan.nii.gz")
    second = _copy(shared.scans[1], root / "b" / "scan.nii.gz")
    out = root / "result_out"
    return Attempt(["convert", str(second), "-o", str(out)], (out,), names=("scan.nii.gz", out.name),
                   expect=frozenset({0, 4}), setup=(["convert", str(first), "-o", str(out)],),
                   check=_records_input(second, out))


# ---------------------------------------------------------------- outputs: batches over a folder or manifest

@kind("outputs")
def run_bool_nifti_in_batch(root: Path, shared: Shared) -> Attempt:
    folder = _scan_folder(root, shared)
    _raw_nifti(folder / "flags.nii.gz", _header_with((12, 11, 10), np.uint8, datatype=1, bitpix=1), bytes(1320))
    out = root / "result_out"
    return Attempt(_run_args(_pipeline(root), folder, out), (out,), expect=frozenset({3}), failed="flags")


@kind("outputs")
def run_symlink_loop_files(root: Path, shared: Shared) -> Attempt:
    folder = _scan_folder(root, shared)
    (folder / "loop_a.nii.gz").symlink_to(folder / "loop_b.nii.gz")
    (folder / "loop_b.nii.gz").symlink_to(folder / "loop_a.nii.gz")
    out = root / "result_out"
    return Attempt(_run_args(_pipeline(root), folder, out), (out,), expect=frozenset({3}), failed="loop_a", timeout=30)


@kind("outputs")
def run_symlink_dir_loop(root: Path, shared: Shared) -> Attempt:
    """A folder symlink to its own parent: no hang, no case found twice, the good cases done."""
    folder = _scan_folder(root, shared)
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)
    out = root / "result_out"

    def three_cases(attempt: Attempt, result: Outcome) -> None:
        rows = read_manifest(out)
        assert sum(row["status"] == "done" for row in rows) == 3 and len(rows) <= 4, rows
    return Attempt(_run_args(_pipeline(root), folder, out), (out,), expect=frozenset({0, 3}), timeout=30, check=three_cases)


@kind("outputs")
def run_fifo_in_folder(root: Path, shared: Shared) -> Attempt:
    folder = _scan_folder(root, shared)
    os.mkfifo(folder / "pipe.nii.gz")
    out = root / "result_out"
    return Attempt(_run_args(_pipeline(root), folder, out), (out,), expect=frozenset({3}), failed="pipe", timeout=30)


def _shadow_run(root: Path, shared: Shared, scan_name: str) -> Attempt:
    folder = _scan_folder(root, shared)
    _copy(shared.scans[0], folder / scan_name)
    out = root / "result_out"
    pipeline = _pipeline(root)
    return Attempt(_run_args(pipeline, folder, out), (out,), expect=frozenset({0}), check=_all_done,
                   followups=(_run_args(pipeline, folder, out, "--resume"),))


@kind("outputs")
def run_workers_header_bomb(root: Path, shared: Shared) -> Attempt:
    """Two worker processes with a model stage: a 13 GB header is one failed case, the others predicted."""
    folder = _scan_folder(root, shared)
    (folder / "bomb.nii.gz").write_bytes(gzip.compress(_header((1500, 1500, 1500), np.float32)))
    pipeline = _pipeline(root, f"model:\n  path: {shared.model}\n  predict: true\n")
    out = root / "result_out"
    return Attempt(_run_args(pipeline, folder, out, "--workers", "2"), (out,), expect=frozenset({3}), failed="bomb")


@kind("outputs")
def run_scan_named_run_json(root: Path, shared: Shared) -> Attempt:
    return _shadow_run(root, shared, "run.json.nii.gz")


@kind("outputs")
def run_scan_named_manifest_csv(root: Path, shared: Shared) -> Attempt:
    return _shadow_run(root, shared, "manifest.csv.nii.gz")


def _run_with_case_id(root: Path, shared: Shared, case_id: str) -> Attempt:
    """A manifest row whose case id names one of the run's own files: the run and its resume both complete."""
    rows = _good_manifest_rows(root, shared)
    rows.append({"case_id": case_id, "image": rows[0]["image"]})
    out = root / "result_out"
    pipeline = _pipeline(root)
    manifest = _manifest(root / "cases.csv", rows)
    return Attempt(_run_args(pipeline, manifest, out), (out,), expect=frozenset({0}), check=_all_done,
                   followups=(_run_args(pipeline, manifest, out, "--resume"),))


@kind("outputs")
def run_scan_named_run_json_exact_id(root: Path, shared: Shared) -> Attempt:
    return _run_with_case_id(root, shared, "run.json")


@kind("outputs")
def run_manifest_case_id_manifest_csv(root: Path, shared: Shared) -> Attempt:
    return _run_with_case_id(root, shared, "manifest.csv")


@kind("outputs")
def run_manifest_case_id_traversal(root: Path, shared: Shared) -> Attempt:
    """``../../../escaped`` as a case id: made safe, nothing written beside OUT (OUT sits 2 folders deep)."""
    rows = _good_manifest_rows(root, shared)
    rows.append({"case_id": "../../../escaped", "image": rows[0]["image"]})
    out = root / "d1" / "d2" / "result_out"
    out.parent.mkdir(parents=True)
    return Attempt(_run_args(_pipeline(root), _manifest(root / "cases.csv", rows), out), (out,), expect=frozenset({0}),
                   check=_names_are_safe)


@kind("outputs")
def run_manifest_case_id_newline_unicode(root: Path, shared: Shared) -> Attempt:
    rows = _good_manifest_rows(root, shared)
    rows.append({"case_id": "new\nline\u202eexe.nii", "image": rows[0]["image"]})
    rows.append({"case_id": "scän ünïcödé", "image": rows[1]["image"]})
    out = root / "result_out"
    return Attempt(_run_args(_pipeline(root), _manifest(root / "cases.csv", rows), out), (out,), expect=frozenset({0}),
                   check=_names_are_safe)


@kind("outputs")
def run_unicode_newline_file_names(root: Path, shared: Shared) -> Attempt:
    folder = _scan_folder(root, shared)
    _copy(shared.scans[0], folder / "scän ü.nii.gz")
    _copy(shared.scans[1], folder / "new\nline.nii.gz")
    _copy(shared.scans[2], folder / "..dots...nii.gz")
    out = root / "result_out"
    return Attempt(_run_args(_pipeline(root), folder, out), (out,), expect=frozenset({0}), check=_names_are_safe)


@kind("outputs")
def run_manifest_bom_crlf(root: Path, shared: Shared) -> Attempt:
    """Excel's 'CSV UTF-8': a byte-order mark and CRLF line ends. A good manifest: it must work."""
    rows = _good_manifest_rows(root, shared)
    manifest = _manifest(root / "cases.csv", rows, encoding="utf-8-sig", lineterminator="\r\n")
    out = root / "result_out"

    def exact_ids(attempt: Attempt, result: Outcome) -> None:
        assert sorted(row["case_id"] for row in read_manifest(out)) == ["good_0", "good_1", "good_2"]
    return Attempt(_run_args(_pipeline(root), manifest, out), (out,), expect=frozenset({0}), check=exact_ids)


@kind("outputs")
def run_manifest_excel_semicolons(root: Path, shared: Shared) -> Attempt:
    """A European Excel export: ``;`` separated, cp1252 encoded."""
    rows = _good_manifest_rows(root, shared)
    rows[0]["label"] = "lésion"
    for row in rows[1:]:
        row["label"] = "normal"
    manifest = _manifest(root / "excel.csv", rows, delimiter=";", encoding="cp1252", lineterminator="\r\n")
    out = root / "result_out"
    return Attempt(_run_args(_pipeline(root), manifest, out), (out,), names=(manifest.name,))


@kind("outputs")
def run_manifest_points_at_etc_passwd(root: Path, shared: Shared) -> Attempt:
    rows = _good_manifest_rows(root, shared)
    rows.append({"case_id": "passwd", "image": "/etc/passwd"})
    out = root / "result_out"
    first = Path("/etc/passwd").read_text().splitlines()[0]
    return Attempt(_run_args(_pipeline(root), _manifest(root / "cases.csv", rows), out), (out,), expect=frozenset({3}),
                   failed="passwd", secret=first)


@kind("outputs")
def run_manifest_points_outside_missing(root: Path, shared: Shared) -> Attempt:
    rows = _good_manifest_rows(root, shared)
    rows.append({"case_id": "elsewhere", "image": "../../nowhere/scan.nii.gz"})
    out = root / "result_out"
    return Attempt(_run_args(_pipeline(root), _manifest(root / "cases.csv", rows), out), (out,), expect=frozenset({3}),
                   failed="elsewhere")


@kind("outputs")
def run_two_folders_same_file_name(root: Path, shared: Shared) -> Attempt:
    """left/image.nii.gz and right/image.nii.gz: ids name left and right; the run records each input path."""
    folder = root / "in"
    _copy(shared.scans[0], folder / "left" / "image.nii.gz")
    _copy(shared.scans[1], folder / "right" / "image.nii.gz")
    out = root / "result_out"

    def distinct(attempt: Attempt, result: Outcome) -> None:
        rows = read_manifest(out)
        ids = sorted(row["case_id"] for row in rows)
        assert len(ids) == 2 and "left" in ids[0] and "right" in ids[1], ids
        text = (out / "manifest.csv").read_text()
        assert "left/image.nii.gz" in text and "right/image.nii.gz" in text, "manifest.csv must record each input path"
    return Attempt(_run_args(_pipeline(root), folder, out), (out,), expect=frozenset({0}), check=distinct)


@kind("outputs")
def run_output_is_existing_file(root: Path, shared: Shared) -> Attempt:
    folder = _scan_folder(root, shared)
    target = root / "taken.txt"
    target.write_text("keep me\n")
    return Attempt(_run_args(_pipeline(root), folder, target), (root / "result_out",), names=(target.name,),
                   untouched=(target,))


@kind("outputs")
def run_dask_scheduler_malformed(root: Path, shared: Shared) -> Attempt:
    folder = _scan_folder(root, shared)
    out = root / "result_out"
    return Attempt(_run_args(_pipeline(root), folder, out, "--dask-scheduler", "tcp://[::1:notaport"), (out,),
                   names=("tcp://[::1:notaport", "--dask-scheduler", "dask"))


@kind("outputs")
def run_ctrl_c(root: Path, shared: Shared) -> Attempt:
    """SIGINT once the run has started (OUT/run.json written): exit 130 and one line ('interrupted after N of M
    cases; rerun with --resume')."""
    rows = _good_manifest_rows(root, shared) * 4
    rows = [dict(row, case_id=f"{row['case_id']}_{i}") for i, row in enumerate(rows)]
    pipeline = _pipeline(root, f"model:\n  path: {shared.model}\nexplain:\n  enabled: true\n  methods: [occlusion, smoothgrad]\n")
    out = root / "result_out"
    return Attempt(_run_args(pipeline, _manifest(root / "cases.csv", rows), out), (out,), names=("interrupted",),
                   expect=frozenset({130}), interrupt_when=out / "run.json")


# ---------------------------------------------------------------- outputs: pipeline files (YAML)

@kind("outputs")
def yaml_alias_bomb(root: Path, shared: Shared) -> Attempt:
    """Billion laughs in 1 KB: refused quickly, and the error does not print the expansion."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]")
    pipeline = _pipeline(root, "\n".join(lines) + "\n", "laughs.yaml")
    folder = _scan_folder(root, shared)
    out = root / "result_out"
    return Attempt(_run_args(pipeline, folder, out), (out,), names=(pipeline.name,), timeout=30)


@kind("outputs")
def yaml_inherits_from_secret_file(root: Path, shared: Shared) -> Attempt:
    """``inherits_from`` a file that is not a pipeline (as /etc/shadow): its content is never echoed."""
    secret = root / "private" / "shadow"
    secret.parent.mkdir()
    secret.write_text(f"{SECRET}:$6$salt$hash:19000:0:99999:7:::\n")
    pipeline = _pipeline(root, f"name: x\ninherits_from: {secret}\n")
    folder = _scan_folder(root, shared)
    out = root / "result_out"
    return Attempt(_run_args(pipeline, folder, out), (out,), names=(pipeline.name, secret.name), secret=SECRET)


@kind("outputs")
def yaml_python_tag_in_pipeline(root: Path, shared: Shared) -> Attempt:
    marker = root / "pwned"
    pipeline = _pipeline(root, f"model:\n  path: !!python/object/apply:os.system [\"{_touch_command(marker)}\"]\n")
    folder = _scan_folder(root, shared)
    out = root / "result_out"
    return Attempt(_run_args(pipeline, folder, out), (out,), names=(pipeline.name,), marker=marker)


@kind("outputs")
def yaml_python_tag_in_set(root: Path, shared: Shared) -> Attempt:
    marker = root / "pwned"
    folder = _scan_folder(root, shared)
    out = root / "result_out"
    value = f"model.path=!!python/object/apply:os.system [\"{_touch_command(marker)}\"]"
    return Attempt(_run_args(_pipeline(root), folder, out, "--set", value), (out,), names=("model.path",), marker=marker)


@kind("outputs")
def yaml_pipeline_not_a_mapping(root: Path, shared: Shared) -> Attempt:
    pipeline = _pipeline(root, "- model\n- explain\n", "listing.yaml")
    folder = _scan_folder(root, shared)
    out = root / "result_out"
    return Attempt(_run_args(pipeline, folder, out), (out,), names=(pipeline.name,))


@kind("outputs")
def yaml_pipeline_binary_garbage(root: Path, shared: Shared) -> Attempt:
    pipeline = root / "garbage.yaml"
    pipeline.write_bytes(b"\xff\xfe\x00\x00" + np.random.default_rng(5).bytes(500))
    folder = _scan_folder(root, shared)
    out = root / "result_out"
    return Attempt(_run_args(pipeline, folder, out), (out,), names=(pipeline.name,))


@kind("outputs")
def yaml_deeply_nested(root: Path, shared: Shared) -> Attempt:
    """20 000 nested flow lists in 40 KB: PyYAML's recursive composer must not turn it into exit 1."""
    pipeline = _pipeline(root, "name: " + "[" * 20000 + "]" * 20000 + "\n", "nested.yaml")
    folder = _scan_folder(root, shared)
    out = root / "result_out"
    return Attempt(_run_args(pipeline, folder, out), (out,), names=(pipeline.name,), timeout=30)


@kind("outputs")
def run_char_device_in_folder(root: Path, shared: Shared) -> Attempt:
    folder = _scan_folder(root, shared)
    (folder / "zero.nii").symlink_to("/dev/zero")
    out = root / "result_out"
    return Attempt(_run_args(_pipeline(root), folder, out), (out,), expect=frozenset({3}), failed="zero", timeout=30)


# ---------------------------------------------------------------- model loading and trust

def _bundle(root: Path, shared: Shared, network_def: dict, **top: object) -> Path:
    folder = root / "evil_bundle"
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    inference = {"num_classes": 2, "network_def": network_def, **top}
    (folder / "configs" / "inference.json").write_text(json.dumps(inference))
    metadata = {"name": "hostile bundle", "network_data_format": {
        "inputs": {"image": {"num_channels": 1, "spatial_shape": [16, 16, 16]}},
        "outputs": {"pred": {"channel_def": {"0": "normal", "1": "lesion"}}}}}
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata))
    _copy(shared.bundle_weights, folder / "models" / "model.pt")
    return folder


def _bundle_attempt(root: Path, shared: Shared, bundle: Path, marker: Path, command: str = "predict") -> Attempt:
    scan = _copy(shared.scans[0], root / "scan.nii.gz")
    out = root / "result_out"
    return Attempt([command, str(bundle), str(scan), "-o", str(out if command == "explain" else out / "preds.csv")],
                   (out,), names=(bundle.name, "inference.json"), marker=marker)


@kind("model")
def bundle_target_attribute_walk_to_os_system(root: Path, shared: Shared) -> Attempt:
    marker = root / "pwned"
    bundle = _bundle(root, shared, {"_target_": "torch.nn.functional.torch.os.system", "command": _touch_command(marker)})
    return _bundle_attempt(root, shared, bundle, marker)


@kind("model")
def bundle_target_nested_in_kwarg(root: Path, shared: Shared) -> Attempt:
    marker = root / "pwned"
    evil = dict(NETWORK_DEF, act={"_target_": "torch.nn.functional.torch.os.system", "command": _touch_command(marker)})
    bundle = _bundle(root, shared, evil)
    return _bundle_attempt(root, shared, bundle, marker, command="explain")


class _Payload:
    """Pickles to a call of ``os.system(command)``: what an attacker puts in a checkpoint."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (self.command,)


def _pickle_payload(path: Path, marker: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": _Payload(_touch_command(marker))}, path)
    return path


@kind("model")
def bundle_target_torch_load_pickle(root: Path, shared: Shared) -> Attempt:
    marker = root / "pwned"
    bundle = _bundle(root, shared, {"_target_": "torch.nn.modules.module.torch.load",
                                    "f": str(root / "evil_bundle" / "models" / "payload.pt"), "weights_only": False})
    _pickle_payload(bundle / "models" / "payload.pt", marker)
    return _bundle_attempt(root, shared, bundle, marker)


@kind("model")
def bundle_dollar_expression(root: Path, shared: Shared) -> Attempt:
    marker = root / "pwned"
    evil = dict(NETWORK_DEF, channels=f"$__import__('os').system('{_touch_command(marker)}') or [4, 8]")
    return _bundle_attempt(root, shared, _bundle(root, shared, evil), marker)


@kind("model")
def bundle_requires_expression(root: Path, shared: Shared) -> Attempt:
    marker = root / "pwned"
    evil = dict(NETWORK_DEF, _requires_=f"$__import__('os').system('{_touch_command(marker)}')")
    return _bundle_attempt(root, shared, _bundle(root, shared, evil), marker)


@kind("model")
def bundle_reference_to_expression(root: Path, shared: Shared) -> Attempt:
    marker = root / "pwned"
    evil = dict(NETWORK_DEF, channels="@evil_channels")
    bundle = _bundle(root, shared, evil, evil_channels=f"$__import__('os').system('{_touch_command(marker)}') or [4, 8]")
    return _bundle_attempt(root, shared, bundle, marker)


@kind("model")
def bundle_via_run_set_model_path(root: Path, shared: Shared) -> Attempt:
    marker = root / "pwned"
    bundle = _bundle(root, shared, {"_target_": "torch.nn.functional.torch.os.system", "command": _touch_command(marker)})
    pipeline = _pipeline(root, "model:\n  predict: true\n")
    folder = _scan_folder(root, shared)
    out = root / "result_out"
    return Attempt(_run_args(pipeline, folder, out, "--set", f"model.path={bundle}"), (out,),
                   names=(bundle.name, "inference.json"), marker=marker)


@kind("model")
def torchscript_without_trust_model(root: Path, shared: Shared) -> Attempt:
    """TorchScript runs the author's code: refused (exit 4) unless --trust-model is given."""
    model = _copy(shared.torchscript, root / "exported.ts")
    scan = _copy(shared.scans[0], root / "scan.nii.gz")
    out = root / "result_out"
    return Attempt(["predict", str(model), str(scan), "--spatial-size", "16", "-o", str(out / "preds.csv")], (out,),
                   names=(model.name,))


@kind("model")
def pickle_checkpoint_as_model(root: Path, shared: Shared) -> Attempt:
    marker = root / "pwned"
    model = _pickle_payload(root / "checkpoint.pt", marker)
    scan = _copy(shared.scans[0], root / "scan.nii.gz")
    out = root / "result_out"
    return Attempt(["predict", str(model), str(scan), "--spatial-size", "16", "-o", str(out / "preds.csv")], (out,),
                   names=(model.name,), marker=marker)


def _edited_model(root: Path, shared: Shared, change: Callable[[dict], None]) -> Path:
    model = root / "model"
    shutil.copytree(shared.model, model)
    info = json.loads((model / "medxai-model.json").read_text())
    change(info)
    (model / "medxai-model.json").write_text(json.dumps(info))
    return model


def _model_attempt(root: Path, shared: Shared, model: Path, command: str = "predict", names: tuple[str, ...] = ()) -> Attempt:
    scan = _copy(shared.scans[0], root / "scan.nii.gz")
    out = root / "result_out"
    target = out if command == "explain" else out / "preds.csv"
    return Attempt([command, str(model), str(scan), "-o", str(target)], (out,), names=names or ("medxai-model.json",))


@kind("model")
def model_json_num_classes_huge(root: Path, shared: Shared) -> Attempt:
    def absurd(info: dict) -> None:
        info["arch_kwargs"]["num_classes"] = 1_000_000_000
        info["classes"] = [f"c{i}" for i in range(3)]
    return _model_attempt(root, shared, _edited_model(root, shared, absurd))


@kind("model")
def model_json_spatial_size_huge(root: Path, shared: Shared) -> Attempt:
    def absurd(info: dict) -> None:
        info["arch_kwargs"]["spatial_size"] = [100000, 100000, 100000]
        info["preprocessing"]["spatial_size"] = [100000, 100000, 100000]
    return _model_attempt(root, shared, _edited_model(root, shared, absurd), command="explain")


@kind("model")
def model_json_spatial_size_negative(root: Path, shared: Shared) -> Attempt:
    def absurd(info: dict) -> None:
        info["arch_kwargs"]["spatial_size"] = [-16, 16, 16]
        info["preprocessing"]["spatial_size"] = [-16, 16, 16]
    return _model_attempt(root, shared, _edited_model(root, shared, absurd))


@kind("model")
def model_json_not_json(root: Path, shared: Shared) -> Attempt:
    model = root / "model"
    shutil.copytree(shared.model, model)
    (model / "medxai-model.json").write_bytes(b"\x00\x01 not json {")
    return _model_attempt(root, shared, model)


@kind("model")
def model_weights_tampered(root: Path, shared: Shared) -> Attempt:
    model = root / "model"
    shutil.copytree(shared.model, model)
    blob = bytearray((model / "weights.safetensors").read_bytes())
    blob[-8:] = b"\xff" * 8
    (model / "weights.safetensors").write_bytes(bytes(blob))
    return _model_attempt(root, shared, model, names=("weights.safetensors", "medxai-model.json", "model"))


@kind("model")
def model_folder_empty(root: Path, shared: Shared) -> Attempt:
    model = root / "nomodel"
    model.mkdir()
    return _model_attempt(root, shared, model, names=(model.name,))


@kind("model")
def model_json_deeply_nested(root: Path, shared: Shared) -> Attempt:
    model = root / "model"
    shutil.copytree(shared.model, model)
    (model / "medxai-model.json").write_text('{"format": ' + "[" * 100000 + "]" * 100000 + "}")
    return _model_attempt(root, shared, model)


# ---------------------------------------------------------------- model commands: batches and outputs

def _good_and_bad(root: Path, shared: Shared, bad: Path) -> list[str]:
    return [str(_copy(shared.scans[0], root / "fine.nii.gz")), str(bad)]


@kind("readers")
def predict_batch_zero_voxel_size(root: Path, shared: Shared) -> Attempt:
    sform = AFFINE.copy()
    sform[:3, 1] = 0.0
    bad = _sform_nifti(root / "zerovox.nii.gz", sform)
    out = root / "result_out"
    preds = out / "preds.csv"

    def fine_row(attempt: Attempt, result: Outcome) -> None:
        assert "fine" in preds.read_text() and "zerovox" not in preds.read_text()
    return Attempt(["predict", str(shared.model), *_good_and_bad(root, shared, bad), "-o", str(preds)], (out,),
                   expect=frozenset({3}), failed="zerovox", check=fine_row)


@kind("readers")
def explain_batch_nan_voxel_size(root: Path, shared: Shared) -> Attempt:
    sform = AFFINE.copy()
    sform[:3, 0] = np.nan
    bad = _sform_nifti(root / "nanvox.nii.gz", sform)
    out = root / "result_out"

    def fine_done(attempt: Attempt, result: Outcome) -> None:
        assert any(out.rglob("fine*/*.nii.gz")) or any(p.name.startswith("fine") for p in case_dirs(out))
    return Attempt(["explain", str(shared.model), *_good_and_bad(root, shared, bad), "-o", str(out), "-m", "saliency"],
                   (out,), expect=frozenset({3}), failed="nanvox", check=fine_done)


@kind("readers")
def score_batch_header_bomb(root: Path, shared: Shared) -> Attempt:
    bad = root / "bomb.nii.gz"
    bad.write_bytes(gzip.compress(_header((1500, 1500, 1500), np.float32)))
    out = root / "result_out"
    scores = out / "scores.csv"
    return Attempt(["score", str(shared.model), *_good_and_bad(root, shared, bad), "-m", "saliency", "--no-sanity",
                    "--no-sensitivity", "-o", str(scores)], (out,), expect=frozenset({3}), failed="bomb")


@kind("outputs")
def explain_full_disk(root: Path, shared: Shared) -> Attempt:
    scan = _copy(shared.scans[0], root / "scan.nii.gz")
    out = root / "result_out"
    return Attempt(["explain", str(shared.model), str(scan), "-o", str(out), "-m", "saliency"], (out,),
                   names=(out.name, "saliency"), fsize=8 << 10)


@kind("outputs")
def explain_same_file_name_twice(root: Path, shared: Shared) -> Attempt:
    """Every sarcoma CT is CT_image.nii.gz: the second explain never replaces the first one's heatmaps."""
    first = _copy(shared.scans[0], root / "patient_a" / "CT_image.nii.gz")
    second = _copy(shared.scans[1], root / "patient_b" / "CT_image.nii.gz")
    out = root / "result_out"
    return Attempt(["explain", str(shared.model), str(second), "-o", str(out), "-m", "saliency"], (out,),
                   names=("CT_image", out.name), expect=frozenset({0, 4}), check=_records_input(second, out),
                   setup=(["explain", str(shared.model), str(first), "-o", str(out), "-m", "saliency"],))


@kind("outputs")
def segment_scan_named_scores_csv(root: Path, shared: Shared) -> Attempt:
    scan = _copy(shared.lesion, root / "segmentation_scores.csv.nii.gz")
    mask = _copy(shared.lesion_mask, root / "reference_mask.nii.gz")
    out = root / "result_out"

    def scores_file(attempt: Attempt, result: Outcome) -> None:
        assert (out / "segmentation_scores.csv").is_file(), "OUT/segmentation_scores.csv must stay a file"
    return Attempt(["segment", str(shared.model), str(scan), "--mask", str(mask), "--method", "saliency", "-o", str(out)],
                   (out,), expect=frozenset({0}), check=scores_file)


@kind("readers")
def explain_mask_mismatched_grid(root: Path, shared: Shared) -> Attempt:
    scan = _copy(shared.scans[0], root / "scan.nii.gz")
    reference = nib.load(scan)
    mask = _nifti(root / "other_grid_mask.nii.gz", np.ones((5, 5, 5), np.uint8), reference.affine)
    out = root / "result_out"
    return Attempt(["explain", str(shared.model), str(scan), "--mask", str(mask), "-m", "saliency", "-o", str(out)],
                   (out,), names=(mask.name,))


@kind("readers")
def explain_box_outside_scan(root: Path, shared: Shared) -> Attempt:
    scan = _copy(shared.scans[0], root / "scan.nii.gz")
    out = root / "result_out"
    return Attempt(["explain", str(shared.model), str(scan), "--box", "0,0,0,500,500,500", "-m", "saliency", "-o", str(out)],
                   (out,), names=("--box", "box", scan.name))


@kind("outputs")
def train_output_is_foreign_folder(root: Path, shared: Shared) -> Attempt:
    """-o names a folder of someone else's files: refused before training, the files untouched."""
    target = root / "thesis"
    target.mkdir()
    (target / "chapter1.txt").write_text("years of work\n")
    labels = shared.scans[0].parent.parent / "labels.csv"
    return Attempt(["train", str(labels), "-o", str(target), "--arch", "tiny", "--epochs", "1", "--device", "cpu"],
                   (root / "result_out",), names=(target.name,), untouched=(target / "chapter1.txt",))


@kind("outputs")
def sample_data_output_is_file(root: Path, shared: Shared) -> Attempt:
    target = root / "taken.txt"
    target.write_text("keep me\n")
    return Attempt(["sample-data", str(target), "--cases", "2", "--size", "16"], (root / "result_out",),
                   names=(target.name,), untouched=(target,))


@kind("outputs")
def report_explanations_json_hostile(root: Path, shared: Shared) -> Attempt:
    """A case folder whose explanations.json nests 100 000 levels deep (json's recursion limit)."""
    case = root / "case_folder"
    case.mkdir()
    (case / "explanations.json").write_text('{"methods": ' + "[" * 100000 + "]" * 100000 + "}")
    out = root / "result_out"
    return Attempt(["report", str(case), "--scan", str(shared.scans[0]), "-o", str(out / "report.pdf")], (out,),
                   names=("explanations.json", case.name))


# ---------------------------------------------------------------- radiomics

def _radiomics(root: Path, image: Path, mask: Path, *extra: str) -> tuple[list[str], tuple[Path, ...]]:
    out = root / "result_out"
    features = out / "features.csv"
    return (["radiomics", "extract", str(image), "--mask", str(mask), "--expansions", "0,2", "-o", str(features), *extra],
            (out, Path(f"{features}.parts")))


def _spaced_pair(root: Path, spacing: float) -> tuple[Path, Path]:
    affine = np.diag([spacing, spacing, spacing, 1.0])
    data = _noise((16, 16, 16))
    mask = np.zeros(data.shape, np.uint8)
    mask[5:11, 5:11, 5:11] = 1
    return _nifti(root / "spaced.nii.gz", data, affine), _nifti(root / "spaced_mask.nii.gz", mask, affine)


@kind("radiomics")
def radiomics_spacing_500mm(root: Path, shared: Shared) -> Attempt:
    image, mask = _spaced_pair(root, 500.0)
    args, outs = _radiomics(root, image, mask)
    return Attempt(args, outs, names=(image.name, mask.name))


@kind("radiomics")
def radiomics_spacing_1um(root: Path, shared: Shared) -> Attempt:
    image, mask = _spaced_pair(root, 0.001)
    args, outs = _radiomics(root, image, mask)
    return Attempt(args, outs, names=(image.name, mask.name))


@kind("radiomics")
def radiomics_empty_mask(root: Path, shared: Shared) -> Attempt:
    image = _copy(shared.lesion, root / "lesion.nii.gz")
    empty = nib.load(shared.lesion_mask)
    mask = _nifti(root / "blank_mask.nii.gz", np.zeros(empty.shape, np.uint8), empty.affine)
    args, outs = _radiomics(root, image, mask)
    return Attempt(args, outs, names=(mask.name,))


@kind("radiomics")
def radiomics_mask_mismatched_grid(root: Path, shared: Shared) -> Attempt:
    image = _copy(shared.lesion, root / "lesion.nii.gz")
    reference = nib.load(shared.lesion_mask)
    shifted = reference.affine.copy()
    shifted[:3, 3] += 7.3
    mask = _nifti(root / "shifted_mask.nii.gz", np.asarray(reference.dataobj).astype(np.uint8), shifted)
    args, outs = _radiomics(root, image, mask)
    return Attempt(args, outs, names=(mask.name,))


@kind("radiomics")
def radiomics_flipped_mask_same_world_grid(root: Path, shared: Shared) -> Attempt:
    """The mask stored with axis 0 flipped (LAS label map on an LPS CT): reoriented exactly, then it works."""
    image = _copy(shared.lesion, root / "lesion.nii.gz")
    reference = nib.load(shared.lesion_mask)
    affine = reference.affine.copy()
    affine[:3, 0] = -reference.affine[:3, 0]
    affine[:3, 3] = reference.affine[:3, 3] + reference.affine[:3, 0] * (reference.shape[0] - 1)
    mask = _nifti(root / "flipped_mask.nii.gz", np.asarray(reference.dataobj)[::-1].astype(np.uint8).copy(), affine)
    args, outs = _radiomics(root, image, mask)
    return Attempt(args, outs, expect=frozenset({0}), check=_output_exists)


@kind("radiomics")
def radiomics_params_python_tag(root: Path, shared: Shared) -> Attempt:
    marker = root / "pwned"
    params = root / "evil_params.yaml"
    params.write_text(f"setting:\n  binWidth: !!python/object/apply:os.system [\"{_touch_command(marker)}\"]\n")
    args, outs = _radiomics(root, _copy(shared.lesion, root / "lesion.nii.gz"),
                            _copy(shared.lesion_mask, root / "lesion_mask.nii.gz"), "--params", str(params))
    return Attempt(args, outs, names=(params.name,), marker=marker)


@kind("radiomics")
def radiomics_save_masks_same_file_name_twice(root: Path, shared: Shared) -> Attempt:
    """Two CT_image.nii.gz from two patients, one --save-masks DIR: the second never replaces the first."""
    image_a = _copy(shared.lesion, root / "patient_a" / "CT_image.nii.gz")
    mask_a = _copy(shared.lesion_mask, root / "patient_a" / "mask.nii.gz")
    reference = nib.load(shared.lesion_mask)
    image_b = _copy(shared.lesion, root / "patient_b" / "CT_image.nii.gz")
    smaller = np.asarray(reference.dataobj).astype(np.uint8)
    smaller[: smaller.shape[0] // 2] = 0
    if not smaller.any():
        smaller = np.asarray(reference.dataobj).astype(np.uint8)
        smaller[smaller.shape[0] // 2:] = 0
    mask_b = _nifti(root / "patient_b" / "mask.nii.gz", smaller, reference.affine)
    masks = root / "result_out" / "masks"
    first = ["radiomics", "extract", str(image_a), "--mask", str(mask_a), "--expansions", "0,2", "--save-masks", str(masks),
             "-o", str(root / "result_out" / "a.csv")]
    second = ["radiomics", "extract", str(image_b), "--mask", str(mask_b), "--expansions", "0,2", "--save-masks", str(masks),
              "-o", str(root / "result_out" / "b.csv")]
    return Attempt(second, (root / "result_out",), names=("CT_image", masks.name),
                   expect=frozenset({0, 4}), setup=(first,), check=_records_input(image_b, root / "result_out"))



@kind("radiomics")
def radiomics_multilabel_mask_without_label(root: Path, shared: Shared) -> Attempt:
    """Labels 1 and 2 where one lesion is expected: refused (name a --mask-label) or merged with a warning naming
    the mask, never merged silently."""
    image = _copy(shared.lesion, root / "lesion.nii.gz")
    reference = nib.load(shared.lesion_mask)
    labels = (np.asarray(reference.dataobj) > 0).astype(np.uint8)
    inside = np.argwhere(labels)
    labels[tuple(inside[: len(inside) // 2].T)] = 2
    mask = _nifti(root / "two_labels.nii.gz", labels, reference.affine)
    args, outs = _radiomics(root, image, mask)

    def not_silent(attempt: Attempt, result: Outcome) -> None:
        assert result.code == 4 or mask.name in result.stderr, "labels 1 and 2 merged without a word"
    return Attempt(args, outs, names=(mask.name,), expect=frozenset({0, 4}), check=not_silent)


@kind("radiomics")
def radiomics_manifest_case_id_traversal(root: Path, shared: Shared) -> Attempt:
    """A manifest case id ``../../escaped`` with --save-masks: every mask stays inside the masks folder."""
    image = _copy(shared.lesion, root / "lesion.nii.gz")
    mask = _copy(shared.lesion_mask, root / "lesion_mask.nii.gz")
    manifest = _manifest(root / "cases.csv", [{"case_id": "../../escaped", "image": image.name, "mask": mask.name}])
    out = root / "d1" / "result_out"
    out.parent.mkdir()
    masks = out / "masks"
    args = ["radiomics", "extract", str(manifest), "--expansions", "0,2", "--save-masks", str(masks), "-o", str(out / "f.csv")]

    def inside(attempt: Attempt, result: Outcome) -> None:
        assert any(masks.rglob("*.nii.gz")), "no mask saved"
    return Attempt(args, (out,), expect=frozenset({0}), check=inside)


@kind("radiomics")
def radiomics_manifest_excel_semicolons(root: Path, shared: Shared) -> Attempt:
    image = _copy(shared.lesion, root / "lesion.nii.gz")
    mask = _copy(shared.lesion_mask, root / "lesion_mask.nii.gz")
    manifest = _manifest(root / "excel.csv", [{"case_id": "lésion", "image": image.name, "mask": mask.name}],
                         delimiter=";", encoding="cp1252", lineterminator="\r\n")
    out = root / "result_out"
    return Attempt(["radiomics", "extract", str(manifest), "-o", str(out / "f.csv")], (out,), names=(manifest.name,))
