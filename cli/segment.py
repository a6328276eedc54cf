"""``medxai segment MODEL_DIR SCAN... -o DIR``: weakly-supervised masks from class heatmaps."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import console


def register(app: typer.Typer) -> None:
    @app.command("segment")
    def segment(
        model_dir: Path = typer.Argument(..., metavar="MODEL_DIR", help="Model directory (medxai train output)."),
        scans: List[str] = typer.Argument(..., metavar="SCAN...", help="Scans ('flair.nii.gz;t1c.nii.gz' for several channels) or labels.csv manifests."),
        out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder: DIR/<case_id>/{mask,heatmap}.nii.gz, segmentation.json."),
        threshold: str = typer.Option("multiotsu-offset:0.5", "--threshold", help="multiotsu-offset[:OFFSET], otsu, percentile:P or fixed:T."),
        method: str = typer.Option("own", "--method", help="'own' (a GP model's heatmap) or an attribution method (gradcam, smoothgrad, ...)."),
        target: str = typer.Option("predicted", "--target", help="'predicted' or a class name."),
        negative_class: str = typer.Option("normal", "--negative-class", help="A scan predicted as this class gets an empty mask."),
        lcc: bool = typer.Option(False, "--lcc/--no-lcc", help="Keep only the largest connected component."),
        fill_holes: bool = typer.Option(False, "--fill-holes/--no-fill-holes", help="Fill enclosed cavities."),
        refine: Optional[str] = typer.Option(None, "--refine", help="Re-draw the margin from the image around the map's peak: otsu, fcm, gmm or kmeans (not in the paper)."),
        refine_margin: float = typer.Option(3.0, "--refine-margin", help="Margin in mm around the thresholded component for --refine."),
        masks: List[Path] = typer.Option([], "--mask", help="Reference mask per scan (in order): Dice, IoU, HD95 in mm."),
        sweep: bool = typer.Option(False, "--sweep", help="Choose the threshold by median Dice on the cases with masks."),
        sweep_grid: str = typer.Option("paper", "--sweep-grid", help="'paper' (multiotsu-offset 0.4..1.0) or comma-separated thresholds."),
        seed: int = typer.Option(0, "--seed", help="Seed of stochastic attribution methods."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
        trust_model: bool = typer.Option(False, "--trust-model", help="Load TorchScript files and MONAI bundles whose configs contain code; never needed for medxai model directories."),
        json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Threshold each scan's class heatmap into a mask on the scan's own grid (Chatterjee et al.)."""
        from medxai.segmentation.segment import PAPER_SWEEP, SegmentSettings, collect_inputs, segment_scans
        from medxai.segmentation.threshold import parse_threshold, parse_threshold_list

        settings = SegmentSettings(rule=parse_threshold(threshold), method=method, target=target,
                                   negative_class=negative_class, keep_largest=lcc, fill_holes=fill_holes, seed=seed,
                                   refine=refine, refine_margin_mm=refine_margin)
        grid = parse_threshold_list(sweep_grid, paper=PAPER_SWEEP) if sweep else None
        cases = collect_inputs(scans, masks=masks)
        with console.progress() as progress:
            summary = segment_scans(model_dir, cases, out_dir, settings=settings, sweep=grid, device=device,
                                    trust=trust_model, progress=progress)
        if json_output:
            console.print_json(summary)
        else:
            typer.echo(f"segmented {summary['segmented']} of {summary['cases']} case(s) into {out_dir} with "
                       f"{summary['threshold']} ({summary['chosen_by']})")
            if summary["scored"]:
                typer.echo(f"median Dice {summary['median_dice']:.3f}, median IoU {summary['median_iou']:.3f}, "
                           f"median HD95 {summary['median_hd95_mm']} mm over {summary['scored']} case(s) with masks")
        for case_id, reason in summary["failed_segmentations"]:
            console.info(f"warning: {case_id}: segmentation failed: {reason}")
        console.report_failed(summary["failed"], total=summary["cases"])
