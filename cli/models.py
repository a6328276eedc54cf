"""``medxai train`` and ``medxai predict``: MONAI 3D classifiers into a model directory, and their probabilities."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import console, options
from .options import parse_spacing, parse_spatial_size


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        data: Path = typer.Argument(..., help="Folder with labels.csv (case_id,image,mask,label), or the CSV itself."),
        output: Path = options.out_option("Model directory to write."),
        task: str = typer.Option("classification", "--task", help="classification or weakseg."),
        arch: Optional[str] = typer.Option(None, "--arch", help="Architecture: tiny, small, resnet10/18/34, densenet121, efficientnet-b0, seresnet50, ...; gp-unet, gp-shuffleunet, gp-reconresnet for weakseg (default: small for classification, gp-unet for weakseg)."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (default: 40 for both tasks)."),
        batch_size: int = typer.Option(8, "--batch-size", help="Scans per training step."),
        lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate (default: 2e-3 for classification, 3e-3 for weakseg: the recipes measured in docs/results.md and docs/weakseg.md)."),
        val_fraction: float = typer.Option(0.2, "--val-fraction", help="Stratified validation share."),
        patience: Optional[int] = typer.Option(None, "--patience", help="Stop after this many epochs without a better validation AUC (default: 40 for classification, i.e. no early stop, measured best on 160 phantoms; 10 for weakseg)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the split, the initial weights, the augmentation and the batch order."),
        spatial_size: Optional[str] = typer.Option(None, "--spatial-size", help="Network input size: N or X,Y,Z voxels (default: 64 for classification, 32 for weakseg; a patch cohort's patches.json sets it)."),
        spacing: Optional[str] = typer.Option(None, "--spacing", help="Resample to X,Y,Z mm first (default: native spacing)."),
        intensity: str = typer.Option("zscore", "--intensity", help="zscore, none or window:LOW,HIGH; per channel separated by ';'."),
        device: str = options.device_option(),
        max_grad_norm: Optional[float] = typer.Option(None, "--max-grad-norm", help="Clip each step's gradient to this L2 norm; 0 = no clipping (default: none for classification, 1 for weakseg)."),
        warmup_epochs: float = typer.Option(0.0, "--warmup-epochs", help="Ramp the learning rate up linearly over this many epochs (default: none)."),
        pooling: Optional[str] = typer.Option(None, "--pooling", help="weakseg only: pool the class maps by 'max' or 'lse:R' (log-sum-exp, sharpness R; default lse:10 for gp-unet, max for the others)."),
        deep_supervision: Optional[float] = typer.Option(None, "--deep-supervision", help="weakseg only: weight of a training-only auxiliary classifier on the encoder (default 0.5; 0 = off)."),
        negative_class: str = typer.Option("auto", "--negative-class", help="weakseg only: the class that is the absence of a finding gets a flat map. 'auto' (default): the one label named normal, healthy, negative, absent, no-lesion, ... (the summary says it was chosen automatically); 'none': every class its own map."),
        json_output: bool = typer.Option(False, "--json", help="Print the training summary as JSON."),
    ) -> None:
        """Train a MONAI 3D classifier (stratified split, class weights, augmentation, early stopping on AUC)."""
        from medxai.models.train import train_model

        with console.progress() as callback:
            summary = train_model(
                data, output, arch=arch, task=task, epochs=epochs, batch_size=batch_size, lr=lr,
                val_fraction=val_fraction, seed=seed, spatial_size=None if spatial_size is None else parse_spatial_size(spatial_size),
                spacing=parse_spacing(spacing), device=device, patience=patience, intensity=intensity,
                max_grad_norm=max_grad_norm, warmup_epochs=warmup_epochs, pooling=pooling,
                deep_supervision=deep_supervision, negative_class=None if negative_class == "none" else negative_class,
                progress=callback,
            )
        if json_output:
            console.print_json(summary)
        else:
            typer.echo(f"{output}: validation AUC {summary['val_auc']:.3f}, F1 {summary['val_f1_macro']:.3f}, "
                       f"accuracy {summary['val_accuracy']:.3f} (n={summary['val_n']}), best epoch {summary['best_epoch']}"
                       f"/{summary['epochs_run']}, {summary['seconds']:.0f} s on {summary['device']}")
        if summary["negative_class_chosen"] == "automatic":
            console.info(f"negative class {summary['negative_class']!r} chosen automatically (its name says the absence "
                         "of a finding; --negative-class none gives every class its own map)")

    @app.command("predict")
    @options.with_model_options
    def predict(
        model: Path = typer.Argument(..., help="Model directory, TorchScript file or MONAI bundle folder."),
        scans: list[str] = typer.Argument(..., help="Scans (NIfTI/NRRD file or DICOM folder); channels joined by ';'."),
        extra_models: list[Path] = typer.Option([], "--model", help="Another model for the ensemble (soft voting); repeatable."),
        output: Optional[Path] = options.out_option("Write preds.csv (case_id,prediction,p_<class>...); default: stdout.", required=False),
        json_output: bool = typer.Option(False, "--json", help="Print predictions as JSON."),
        batch_size: int = typer.Option(4, "--batch-size", min=1, help="Scans per forward pass."),
        model_options: options.ModelOptions = options.ModelOptions(),
    ) -> None:
        """Class probabilities per scan; several models are ensembled by averaging their probabilities."""
        from medxai.models.predict import predict_scans, predictions_csv, write_predictions

        models = model_options.load([model, *extra_models])
        with console.progress() as callback:
            batch = predict_scans(models, list(scans), batch_size=batch_size, progress=callback)
        results = batch.predictions
        if output is not None:
            write_predictions(results, models[0].classes, output)
            console.info(f"wrote {len(results)} prediction(s) to {output}")
        if json_output:
            console.print_json([{"case_id": r.case_id, "prediction": r.prediction, "probabilities": r.probabilities,
                                 "input": r.input} for r in results])
        elif output is None:
            typer.echo(predictions_csv(results, models[0].classes), nl=False)
        console.report_failed(batch.failed, total=len(scans))
