"""``medxai segment MODEL_DIR SCAN... -o DIR``: weakly-supervised masks from class heatmaps."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import console, options


def register(app: typer.Typer) -> None:
    @app.command("segment")
    @options.with_model_options
    def segment(
        model_dir: Path = typer.Argument(..., metavar="MODEL_DIR", help="Model directory (medxai train output)."),
        scans: List[str] = typer.Argument(..., metavar="SCAN...", help="Scans ('flair.nii.gz;t1c.nii.gz' for several channels) or labels.csv manifests."),
        out_dir: Path = options.out_option("Output folder: DIR/<case_id>/{mask,heatmap}.nii.gz, segmentation.json."),
        threshold: Optional[str] = typer.Option(None, "--threshold", help="multiotsu-offset[:OFFSET], multiotsu:K (top of K classes), body-quantile:Q (keeps the top 1-Q of the body), otsu, percentile:P or fixed:T. Default: the rule saved in MODEL_DIR/threshold.json for this --method (segment --sweep --save-threshold), else multiotsu-offset:0.5."),
        method: str = typer.Option("own", "--method", help="'own' (a GP model's heatmap) or an attribution method (gradcam, smoothgrad, ...)."),
        target: str = typer.Option("predicted", "--target", help="'predicted' or a class name."),
        negative_class: str = typer.Option("normal", "--negative-class", help="A scan predicted as this class gets an empty mask."),
        lcc: bool = typer.Option(False, "--lcc/--no-lcc", help="Keep only the largest connected component."),
        fill_holes: bool = typer.Option(False, "--fill-holes/--no-fill-holes", help="Fill enclosed cavities."),
        refine: str = typer.Option("auto", "--refine", help="Re-draw the margin from the image around the map's peak: otsu, fcm, gmm, kmeans or none (not in the paper). 'auto': the refinement saved with the threshold in threshold.json, else otsu for --method own (measured to help: phantoms 0.32 -> 0.89, BRATS 0.67 -> 0.76 median Dice, docs/weakseg.md) and none for post-hoc maps (it did not help them)."),
        refine_margin: float = typer.Option(3.0, "--refine-margin", help="Margin in mm around the thresholded component for --refine."),
        masks: List[Path] = typer.Option([], "--mask", help="Reference mask per scan (in order): Dice, IoU, HD95 in mm."),
        sweep: bool = typer.Option(False, "--sweep", help="Choose the threshold by median Dice on the cases with masks; candidates whose masks coincide are reported (sweep.json 'degenerate') and dropped."),
        sweep_grid: str = typer.Option("wide", "--sweep-grid", help="'wide' (the paper's offsets, otsu, multiotsu:3..5, body-quantile:0.8..0.99), 'paper' (multiotsu-offset 0.4..1.0) or comma-separated thresholds."),
        save_threshold: bool = typer.Option(False, "--save-threshold", help="With --sweep: keep the chosen threshold (and --refine) in MODEL_DIR/threshold.json for this --method; later runs without --threshold use it."),
        seed: int = typer.Option(0, "--seed", help="Seed of stochastic attribution methods."),
        json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
        model_options: options.ModelOptions = options.ModelOptions(),
    ) -> None:
        """Threshold each scan's class heatmap into a mask on the scan's own grid (Chatterjee et al.)."""
        from medxai.segmentation.segment import SegmentSettings, collect_inputs, segment_scans
        from medxai.segmentation.threshold import parse_threshold, parse_threshold_list

        settings = SegmentSettings(rule=None if threshold is None else parse_threshold(threshold), method=method,
                                   target=target, negative_class=negative_class, keep_largest=lcc, fill_holes=fill_holes,
                                   seed=seed, refine=None if refine == "none" else refine, refine_margin_mm=refine_margin)
        grid = parse_threshold_list(sweep_grid) if sweep else None
        model, = model_options.load([model_dir])
        cases = collect_inputs(scans, masks=masks)
        with console.progress() as progress:
            summary = segment_scans(model_dir, cases, out_dir, settings=settings, sweep=grid, model=model,
                                    progress=progress, save_threshold=save_threshold)
        if json_output:
            console.print_json(summary)
        else:
            refined = f", refined by {summary['refine']}" if summary["refine"] else ""
            typer.echo(f"segmented {summary['segmented']} of {summary['cases']} case(s) into {out_dir} with "
                       f"{summary['threshold']} ({summary['chosen_by']}){refined}")
            if summary["scored"]:
                typer.echo(f"median Dice {summary['median_dice']:.3f}, median IoU {summary['median_iou']:.3f}, "
                           f"median HD95 {summary['median_hd95_mm']} mm over {summary['scored']} case(s) with masks")
        for note in summary.get("sweep", {}).get("degenerate", []):
            console.info(f"warning: sweep: {note}")
        if save_threshold:
            console.info(f"kept {summary['threshold']} in {model_dir / 'threshold.json'}")
        for case_id, reason in summary["failed_segmentations"]:
            console.info(f"warning: {case_id}: segmentation failed: {reason}")
        console.report_failed(summary["failed"], total=summary["cases"])
