"""``medxai sample-data DIR``: a synthetic phantom cohort with known ground truth (labels + lesion masks)."""
from __future__ import annotations

from pathlib import Path

import typer

from . import console


def register(app: typer.Typer) -> None:
    @app.command("sample-data")
    def sample_data(
        out_dir: Path = typer.Argument(..., metavar="DIR", help="Output folder: DIR/labels.csv, DIR/images/, DIR/masks/."),
        cases: int = typer.Option(40, "--cases", "-n", min=2, help="Number of cases (classes exactly balanced)."),
        seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same cohort."),
        size: int = typer.Option(64, "--size", min=16, help="Voxels per axis (1 mm voxels; field of view SIZE mm)."),
        task: str = typer.Option("presence", "--task", help="presence (normal/lesion) or malignancy (benign/malignant)."),
        grid_mix: bool = typer.Option(True, "--grid-mix/--no-grid-mix", help="A quarter of cases on anisotropic, oblique or flipped grids."),
        json_output: bool = typer.Option(False, "--json", help="Print where it wrote and the class counts as JSON."),
    ) -> None:
        """Generate phantoms (anatomy, bias field, noise, distractor blobs, lesions) with labels and masks."""
        from medxai.synthetic.cohort import class_counts, make_cohort
        from medxai.synthetic.phantom import check_task

        with console.progress() as progress:
            labels_csv = make_cohort(out_dir, cases=cases, seed=seed, size=size, task=task, grid_mix=grid_mix,
                                     progress=progress)
        found = class_counts(labels_csv)
        counts = {label: found.get(label, 0) for label in check_task(task)}
        if json_output:
            console.print_json({"labels_csv": str(labels_csv), "cases": cases, "task": task, "classes": counts})
        console.info(f"wrote {cases} {task} phantoms to {out_dir} ({labels_csv}); "
                     + ", ".join(f"{label}: {count}" for label, count in counts.items()))
