"""``medxai train`` and ``medxai predict``: MONAI 3D classifiers into a model directory, and their probabilities."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from . import console


def parse_spatial_size(text: str) -> tuple[int, int, int]:
    """``64`` or ``64,64,32`` -> three sizes."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected N or X,Y,Z voxel counts, got {text!r}") from None
    if len(sizes) not in (1, 3) or min(sizes) < 1:
        raise typer.BadParameter(f"expected N or X,Y,Z voxel counts, got {text!r}")
    return sizes * 3 if len(sizes) == 1 else sizes  # type: ignore[return-value]


def parse_spacing(text: Optional[str]) -> Optional[tuple[float, float, float]]:
    """``1.5`` or ``1,1,2.5`` (mm) -> three spacings; None keeps the native spacing."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected S or X,Y,Z in mm, got {text!r}") from None
    if len(values) not in (1, 3) or min(values) <= 0:
        raise typer.BadParameter(f"expected S or X,Y,Z in mm, got {text!r}")
    return values * 3 if len(values) == 1 else values  # type: ignore[return-value]


def parse_classes(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def load_models(paths: list[Path], *, device: str, classes: Optional[str], spatial_size: Optional[str],
                spacing: Optional[str], intensity: Optional[str], trust: bool = False) -> list[Any]:
    """Load model directories, TorchScript files or MONAI bundles with the bring-your-own options."""
    from medxai.models.model_dir import load_model

    return [
        load_model(
            path, device=device, classes=parse_classes(classes),
            spatial_size=None if spatial_size is None else parse_spatial_size(spatial_size),
            spacing=parse_spacing(spacing), intensity=intensity, trust=trust,
        )
        for path in paths
    ]


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        data: Path = typer.Argument(..., help="Folder with labels.csv (case_id,image,mask,label), or the CSV itself."),
        output: Path = typer.Option(..., "-o", "--output", help="Model directory to write."),
        task: str = typer.Option("classification", "--task", help="classification or weakseg."),
        arch: str = typer.Option("tiny", "--arch", help="Architecture (tiny, resnet10/18/34, densenet121, efficientnet-b0, seresnet50, ...)."),
        epochs: int = typer.Option(20, "--epochs", help="Maximum epochs."),
        batch_size: int = typer.Option(8, "--batch-size"),
        lr: float = typer.Option(1e-3, "--lr", help="AdamW learning rate."),
        val_fraction: float = typer.Option(0.2, "--val-fraction", help="Stratified validation share."),
        patience: int = typer.Option(10, "--patience", help="Stop after this many epochs without a better validation AUC."),
        seed: int = typer.Option(0, "--seed"),
        spatial_size: str = typer.Option("64", "--spatial-size", help="Network input size: N or X,Y,Z voxels."),
        spacing: Optional[str] = typer.Option(None, "--spacing", help="Resample to X,Y,Z mm first (default: native spacing)."),
        intensity: str = typer.Option("zscore", "--intensity", help="zscore, none or window:LOW,HIGH; per channel separated by ';'."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        max_grad_norm: Optional[float] = typer.Option(None, "--max-grad-norm", help="Clip each step's gradient to this L2 norm (default: no clipping)."),
        warmup_epochs: float = typer.Option(0.0, "--warmup-epochs", help="Ramp the learning rate up linearly over this many epochs (default: none)."),
        pooling: Optional[str] = typer.Option(None, "--pooling", help="weakseg only: pool the class maps by 'max' or 'lse:R' (log-sum-exp, sharpness R; default lse:10 for gp-unet, max for the others)."),
        deep_supervision: Optional[float] = typer.Option(None, "--deep-supervision", help="weakseg only: weight of a training-only auxiliary classifier on the encoder (default 0.5; 0 = off)."),
        negative_class: Optional[str] = typer.Option(None, "--negative-class", help="weakseg only: the class that is the absence of a finding (e.g. normal) gets a flat map (default: every class its own map)."),
        json_output: bool = typer.Option(False, "--json", help="Print the training summary as JSON."),
    ) -> None:
        """Train a MONAI 3D classifier (stratified split, class weights, augmentation, early stopping on AUC)."""
        from medxai.models.train import train_model

        with console.progress() as callback:
            summary = train_model(
                data, output, arch=arch, task=task, epochs=epochs, batch_size=batch_size, lr=lr,
                val_fraction=val_fraction, seed=seed, spatial_size=parse_spatial_size(spatial_size),
                spacing=parse_spacing(spacing), device=device, patience=patience, intensity=intensity,
                max_grad_norm=max_grad_norm, warmup_epochs=warmup_epochs, pooling=pooling,
                deep_supervision=deep_supervision, negative_class=negative_class, progress=callback,
            )
        if json_output:
            console.print_json(summary)
        else:
            typer.echo(f"{output}: validation AUC {summary['val_auc']:.3f}, F1 {summary['val_f1_macro']:.3f}, "
                       f"accuracy {summary['val_accuracy']:.3f} (n={summary['val_n']}), best epoch {summary['best_epoch']}"
                       f"/{summary['epochs_run']}, {summary['seconds']:.0f} s on {summary['device']}")

    @app.command("predict")
    def predict(
        model: Path = typer.Argument(..., help="Model directory, TorchScript file or MONAI bundle folder."),
        scans: list[str] = typer.Argument(..., help="Scans (NIfTI/NRRD file or DICOM folder); channels joined by ';'."),
        extra_models: list[Path] = typer.Option([], "--model", help="Another model for the ensemble (soft voting); repeatable."),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write preds.csv (case_id,prediction,p_<class>...)."),
        json_output: bool = typer.Option(False, "--json", help="Print predictions as JSON."),
        batch_size: int = typer.Option(4, "--batch-size"),
        device: str = typer.Option("cpu", "--device", help="auto, cpu or cuda."),
        classes: Optional[str] = typer.Option(None, "--classes", help="Class names, comma-separated (TorchScript/bundle)."),
        spatial_size: Optional[str] = typer.Option(None, "--spatial-size", help="Input size N or X,Y,Z (TorchScript/bundle)."),
        spacing: Optional[str] = typer.Option(None, "--spacing", help="Resample to X,Y,Z mm (TorchScript/bundle)."),
        intensity: Optional[str] = typer.Option(None, "--intensity", help="zscore, none or window:LOW,HIGH (TorchScript/bundle)."),
        trust_model: bool = typer.Option(False, "--trust-model", help="Load TorchScript files and MONAI bundles whose configs contain code; never needed for medxai model directories."),
    ) -> None:
        """Class probabilities per scan; several models are ensembled by averaging their probabilities."""
        from medxai.models.predict import predict as run_predict
        from medxai.models.predict import predictions_csv, write_predictions

        models = load_models([model, *extra_models], device=device, classes=classes, spatial_size=spatial_size,
                             spacing=spacing, intensity=intensity, trust=trust_model)
        # One scan: its error is the command's (exit 4). Several: a bad scan is reported and skipped (exit 3).
        failed: list[tuple[str, str]] | None = [] if len(scans) > 1 else None
        with console.progress() as callback:
            results = run_predict(models, [tuple(Path(p) for p in s.split(";") if p) for s in scans], batch_size=batch_size,
                                  progress=callback, failed=failed)
        if output is not None:
            write_predictions(results, models[0].classes, output)
            console.info(f"wrote {len(results)} prediction(s) to {output}")
        if json_output:
            console.print_json([{"case_id": r.case_id, "prediction": r.prediction, "probabilities": r.probabilities,
                                 "input": r.input} for r in results])
        elif output is None:
            typer.echo(predictions_csv(results, models[0].classes), nl=False)
        console.report_failed(failed or [], total=len(scans))
