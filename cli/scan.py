"""``medxai info`` and ``medxai convert``: what a scan is, and every 3D series of it as NIfTI + sidecar."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from . import console, options


def _volume_lines(volume: dict[str, Any], indent: str) -> list[str]:
    spacing = " x ".join(f"{s:g}" for s in volume["spacing_mm"])
    intensity = volume["intensity"]
    return [
        f"{indent}shape {' x '.join(map(str, volume['shape']))}, spacing {spacing} mm, orientation {volume['orientation']}",
        f"{indent}origin {tuple(round(v, 3) for v in volume['origin_mm'])} mm (RAS)",
        f"{indent}affine {volume['affine'][:3]}",
        f"{indent}{volume['dtype']} values {intensity['min']:g} .. {intensity['max']:g} (mean {intensity['mean']:.4g})",
    ]


def format_info(result: dict[str, Any]) -> str:
    """Human-readable form of :func:`medxai.io.scan_info.describe_scan`'s result."""
    lines = [f"{result['source']} ({result['format']})"]
    if "volume" in result:
        lines += _volume_lines(result["volume"], "  ")
    for series in result.get("series", []):
        number = "" if series["number"] is None else f"#{series['number']} "
        description = f"'{series['description']}' " if series["description"] else ""
        lines.append(f"  series {number}{description}{series['modality']}, {series['files']} files, {series['frames']} frames, "
                     f"{series['orientation']}, uid {series['uid']}")
        lines += _volume_lines(series["volume"], "    ") if "volume" in series else [f"    not a 3D volume: {series['problem']}"]
    if "mask" in result:
        mask = result["mask"]
        lines.append(f"  mask {mask['source']}: {mask['voxels']} voxels, {mask['volume_ml']} ml")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info(
        scan: Path = typer.Argument(..., help="NIfTI/NRRD/MHA file, DICOM file or DICOM folder."),
        json_output: bool = typer.Option(False, "--json", help="Print the description as JSON."),
        series: Optional[str] = typer.Option(None, "--series", help="Only this SeriesInstanceUID."),
        mask: Optional[Path] = typer.Option(None, "--mask", help="Also summarise this mask (label map, RTSTRUCT or SEG)."),
        label: Optional[str] = typer.Option(None, "--label", help="Mask label value, ROI or segment (name or number)."),
    ) -> None:
        """Geometry, modality, intensity range and the DICOM series found (no patient identifiers)."""
        from medxai.io.scan_info import describe_scan

        result = describe_scan(scan, series_uid=series, mask=mask, label=label)
        if json_output:
            console.print_json(result)
        else:
            typer.echo(format_info(result))

    @app.command("convert")
    def convert(
        scan: Path = typer.Argument(..., help="DICOM folder or file, NIfTI, NRRD or MHA."),
        output: Path = options.out_option("Folder for <series>.nii.gz + <series>.json."),
        json_output: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
        resample_tilt: bool = typer.Option(
            False, "--resample-tilt", help="Resample gantry-tilted series onto an orthogonal grid (linear) instead of refusing them."
        ),
    ) -> None:
        """Every 3D series to NIfTI plus a JSON sidecar of acquisition metadata (no patient identifiers)."""
        from medxai.io.convert import convert_scan

        with console.progress() as callback:
            report = convert_scan(scan, output, resample_tilt=resample_tilt, progress=callback)
        for note in report.skipped:
            console.info(f"skipped series {note}")
        if json_output:
            console.print_json({"written": [{"name": w.name, "image": str(w.image), "sidecar": str(w.sidecar),
                                             "shape": list(w.shape)} for w in report.written],
                                "skipped": list(report.skipped)})
        else:
            for written in report.written:
                typer.echo(written.image)
