"""``medxai demo [-o DIR]``: the whole chain on generated phantoms, then a table of where everything is."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import console, options


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out_dir: Path = options.out_option("Output folder (a previous demo there is replaced).", required=False, default=Path("demo-output")),
        cases: Optional[int] = typer.Option(None, "--cases", "-n", min=8, help="Phantoms to generate (default 160; 12 with --quick)."),
        seed: int = typer.Option(0, "--seed", help="Seed of every step; the same seed gives the same results."),
        quick: bool = typer.Option(False, "--quick", help="Tiny sizes: every step and output in seconds (smoke test)."),
        json_output: bool = typer.Option(False, "--json", help="Print the outputs, figures and timings as JSON."),
    ) -> None:
        """Generate phantoms, train, predict, explain, score, segment, run radiomics, write NIfTI heatmaps and PDFs."""
        from medxai.demo import DemoSettings, run_demo

        settings = DemoSettings.quick(seed=seed, cases=cases) if quick else (
            DemoSettings(seed=seed) if cases is None else DemoSettings(seed=seed, cases=cases))
        with console.progress() as progress:
            result = run_demo(out_dir, settings=settings, progress=progress)
        if json_output:
            console.print_json({"outputs": {k: str(v) for k, v in result.outputs.items()}, "metrics": result.metrics,
                                "seconds": result.seconds, "explained": result.explained})
            return
        from rich.table import Table

        metrics = result.metrics
        table = Table(title=f"medxai demo in {sum(result.seconds.values()):.0f} s: outputs", title_justify="left")
        table.add_column("what")
        table.add_column("where", overflow="fold")
        for label, path in result.outputs.items():
            table.add_row(label, str(path))
        console.stdout.print(table)
        console.stdout.print(
            f"model: {metrics['model']} 3D CNN, validation AUC {metrics['val_auc']:.2f} ({metrics['n_val']} cases), "
            f"held-out AUC {metrics['test_auc']:.2f} ({metrics['test_n']} cases); explained: {', '.join(result.explained)}; "
            f"segmentation: {metrics['segmentation']['kind']}", markup=False)
        for case_id, reason in metrics["segmentation"].get("failed_segmentations") or []:
            console.stdout.print(f"segmentation FAILED for {case_id}: {reason} (no lesion volume is reported)", markup=False)
