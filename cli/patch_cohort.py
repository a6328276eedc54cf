"""``medxai patch-cohort MANIFEST.csv -o DIR``: a labelled patch cohort cut from volumes with masks."""
from __future__ import annotations

from pathlib import Path

import typer

from . import console


def register(app: typer.Typer) -> None:
    @app.command("patch-cohort")
    def patch_cohort(
        manifest: Path = typer.Argument(..., metavar="MANIFEST.csv",
                                        help="case_id,image,mask,label (image may be 'a;b'); every row needs a mask."),
        out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder: DIR/labels.csv, images/, masks/, patches.json."),
        patch_size: int = typer.Option(32, "--patch-size", help="Patch side in voxels (at --spacing)."),
        spacing: float = typer.Option(1.5, "--spacing", help="Isotropic voxel size (mm) the volumes are resampled to."),
        per_case: int = typer.Option(8, "--per-case", help="At most this many lesion and this many normal patches per case."),
        seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same patches."),
        min_foreground: float = typer.Option(0.5, "--min-foreground", help="Foreground share a normal patch needs."),
        json_output: bool = typer.Option(False, "--json", help="Print the patches.json record on stdout."),
    ) -> None:
        """Cut lesion patches (centred on mask voxels) and normal patches (no mask voxel); labels derived from the masks."""
        from medxai.models.patch_cohort import PatchSettings, read_manifest, write_patch_cohort

        settings = PatchSettings(patch_size=patch_size, spacing_mm=spacing, per_case=per_case, seed=seed,
                                 min_foreground=min_foreground)
        cases = read_manifest(manifest)
        with console.progress() as progress:
            record = write_patch_cohort(cases, out_dir, settings, progress=progress)
        if json_output:
            console.print_json(record)
        counts = record["counts"]
        console.info(f"wrote {counts['lesion']} lesion and {counts['normal']} normal patches of {len(cases)} case(s) to "
                     f"{out_dir / 'labels.csv'} (labels derived from the masks; see {out_dir / 'patches.json'})")
