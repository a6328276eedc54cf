"""Shared checks for the DICOM export tests: dciodvfy, reading SEG / Parametric Map frames back onto a
NIfTI grid through their own plane positions (pydicom only, independent of the writer), and a real Orthanc."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

import numpy as np
import pydicom
import pytest

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def frame_item(dataset: pydicom.Dataset, index: int, name: str) -> pydicom.Dataset:
    """A functional-group macro of frame ``index``: its per-frame item, else the shared one."""
    per_frame = dataset.PerFrameFunctionalGroupsSequence[index]
    return (per_frame if name in per_frame else dataset.SharedFunctionalGroupsSequence[0])[name][0]


def frame_geometry(dataset: pydicom.Dataset, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position (LPS), row/column direction cosines and pixel spacing of frame ``index`` of an enhanced object."""
    position = np.array(frame_item(dataset, index, "PlanePositionSequence").ImagePositionPatient, dtype=float)
    orientation = np.array(frame_item(dataset, index, "PlaneOrientationSequence").ImageOrientationPatient, dtype=float)
    spacing = np.array(frame_item(dataset, index, "PixelMeasuresSequence").PixelSpacing, dtype=float)
    return position, orientation, spacing


def frames_on_grid(path: Path, affine: np.ndarray, shape: tuple[int, int, int], *, segment: int | None = None) -> np.ndarray:
    """The frames of a SEG (one segment) or Parametric Map put on the (i, j, k) grid of a RAS ``affine`` through
    each frame's ImagePositionPatient: every pixel centre must land exactly on a voxel centre of the grid."""
    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array.reshape((-1, dataset.Rows, dataset.Columns))
    out = np.zeros(shape, dtype=pixels.dtype)
    seen = np.zeros(shape, dtype=bool)
    to_voxel = np.linalg.inv(affine)
    rows, columns = np.meshgrid(np.arange(dataset.Rows), np.arange(dataset.Columns), indexing="ij")
    for index in range(pixels.shape[0]):
        position, orientation, spacing = frame_geometry(dataset, index)
        if segment is not None and frame_item(dataset, index, "SegmentIdentificationSequence").ReferencedSegmentNumber != segment:
            continue
        lps = (position[:, None, None] + orientation[:3, None, None] * spacing[1] * columns
               + orientation[3:, None, None] * spacing[0] * rows)
        ras = np.einsum("ab,bij->aij", LPS_TO_RAS, lps)
        voxel = np.einsum("ab,bij->aij", to_voxel[:3, :3], ras) + to_voxel[:3, 3, None, None]
        nearest = np.rint(voxel)
        assert np.abs(voxel - nearest).max() < 1e-3, "a pixel centre is off the NIfTI grid"
        i, j, k = nearest.astype(int)
        assert (i >= 0).all() and (j >= 0).all() and (k >= 0).all(), "a pixel lies outside the NIfTI grid"
        out[i, j, k] = pixels[index]
        assert not seen[i, j, k].any(), "two frames cover the same voxels"
        seen[i, j, k] = True
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def _dciodvfy_path() -> str:
    found = shutil.which("dciodvfy")
    if found is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed and could not be installed: "
                    "run `make venv` as root, or apt-get install dicom3tools")
    return found


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's Error lines for one file (it reports on stderr)."""
    completed = subprocess.run([_dciodvfy_path(), str(path)], capture_output=True, text=True, timeout=120)
    lines = (completed.stdout + completed.stderr).splitlines()
    assert any(line.strip() for line in lines), "dciodvfy printed nothing"
    return [line for line in lines if line.startswith("Error")]


@pytest.fixture
def checks():
    """``checks.frames_on_grid``, ``checks.dice``, ``checks.dciodvfy_errors``."""
    return SimpleNamespace(frames_on_grid=frames_on_grid, dice=dice, dciodvfy_errors=dciodvfy_errors)


DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
REFUSE_ALL = "function ReceivedInstanceFilter(dicom, origin, info)\n  return false\nend\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback test server)
        return json.loads(response.read() or b"null")


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``orthanc(refuse=False)`` starts an Orthanc with DICOMweb on a free loopback port and a temporary
    storage folder (no authentication, no remote access, no DIMSE listener); returns its HTTP base URL."""
    binary = shutil.which("Orthanc")
    if binary is None or not DICOMWEB_PLUGIN.is_file():
        pytest.skip("Orthanc with its DICOMweb plugin is not installed and could not be installed: run `make venv` "
                    "as root, or apt-get install orthanc orthanc-dicomweb")
    started: list[subprocess.Popen] = []

    def start(*, refuse: bool = False) -> str:
        folder = tmp_path / f"orthanc{len(started)}"
        folder.mkdir()
        port = free_port()
        config = {"Name": "medxai-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
                  "HttpPort": port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
                  "DicomServerEnabled": False, "Plugins": [str(DICOMWEB_PLUGIN)],
                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        if refuse:
            (folder / "refuse.lua").write_text(REFUSE_ALL)
            config["LuaScripts"] = [str(folder / "refuse.lua")]
        (folder / "orthanc.json").write_text(json.dumps(config))
        log = (folder / "orthanc.log").open("wb")
        started.append(subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                get_json(f"{base}/system")
                return base
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"Orthanc did not start: {(folder / 'orthanc.log').read_text()[-2000:]}")

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)
