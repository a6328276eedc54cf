"""``medxai radiomics extract`` / ``medxai radiomics study``: peritumoral radiomics and its CV study."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer

from . import console, options

radiomics_app = typer.Typer(
    name="radiomics", help="Radiomics of the lesion and its peritumoral shells (PyRadiomics), and the CV study.",
    no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
)


@radiomics_app.command("extract")
def extract(
    source: Path = typer.Argument(..., metavar="MANIFEST.csv|IMAGE", help="A manifest (case_id,image,mask|bbox|bbox_mm|seed_mm+radius_mm) or one image."),
    out: Path = options.out_option("Features CSV: case_id,region,distance_mm then PyRadiomics' columns."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Lesion mask (NIfTI/NRRD on the image grid, or DICOM RTSTRUCT/SEG)."),
    mask_label: Optional[str] = typer.Option(None, "--mask-label", help="Label value (or RTSTRUCT ROI name) inside the mask."),
    bbox: Optional[str] = typer.Option(None, "--bbox", help="Voxel box i0,j0,k0,i1,j1,k1 (inclusive) to segment the lesion in."),
    bbox_mm: Optional[str] = typer.Option(None, "--bbox-mm", help="World box x0,y0,z0,x1,y1,z1 in RAS mm."),
    seed_point: Optional[str] = typer.Option(None, "--seed-point", help="Lesion centre x,y,z in RAS mm (with --radius)."),
    radius: Optional[float] = typer.Option(None, "--radius", help="Radius in mm around --seed-point to segment in."),
    segmenter: str = typer.Option("otsu", "--segmenter", help="otsu, fcm, gmm, kmeans or knn (box/seed input only)."),
    expansions: str = typer.Option("0,2,4,6,8,10,12", "--expansions", help="Distances in mm; 0 = the lesion itself."),
    box_dilation: bool = typer.Option(False, "--box-dilation", help="Also the paper's box-shaped per-axis dilation."),
    params: str = typer.Option("ct", "--params", help="PyRadiomics parameter file, or a preset: ct, mr, ibsi-a .. ibsi-e (IBSI-1 configurations; ibsi = ibsi-c)."),
    tissue: Optional[str] = typer.Option(None, "--tissue", help="Clip shells to a CT tissue: lung or body."),
    tissue_mask: Optional[Path] = typer.Option(None, "--tissue-mask", help="Clip shells to this mask (single image)."),
    save_masks: Optional[Path] = typer.Option(None, "--save-masks", help="Write DIR/<case_id>/<region>_<d>mm.nii.gz."),
    diagnostics: bool = typer.Option(False, "--diagnostics", help="Keep PyRadiomics' diagnostics_* columns."),
    modality: Optional[str] = typer.Option(None, "--modality", help="CT, MR, PT...: a preset for another modality is refused (default: DICOM Modality, if any)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Cases in parallel (processes)."),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Per-case parts for resuming (default OUT.parts/)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the stochastic segmenters."),
) -> None:
    """Features per case x region (lesion, shell, expanded[, box]) x distance."""
    from medxai.radiomics.batch import run_extraction
    from medxai.radiomics.cases import ExtractionOptions, cases_from_source
    from medxai.radiomics.shells import parse_distances

    options = ExtractionOptions(params=params, distances_mm=parse_distances(expansions), box_dilation=box_dilation,
                                segmenter=segmenter, tissue=tissue, diagnostics=diagnostics, save_masks=save_masks, seed=seed,
                                modality=modality)
    cases = cases_from_source(source, mask=mask, mask_label=mask_label, bbox=bbox, bbox_mm=bbox_mm,
                              seed_mm=seed_point, radius_mm=radius, tissue_mask=tissue_mask)
    from medxai.io.atomic import output_file, output_folder

    # -o and --save-masks: checked before the work (a folder or file in the way, not writable), removed if left empty
    masks_folder = output_folder(save_masks) if save_masks is not None else nullcontext()
    with output_file(out), masks_folder, console.progress() as progress:
        summary = run_extraction(cases, out, options=options, workers=workers, work_dir=work_dir, progress=progress)
    console.info(f"{len(summary.computed)} case(s) extracted, {len(summary.reused)} reused from the work folder")
    typer.echo(f"wrote {summary.rows} rows to {out}")
    console.report_failed(list(summary.failed.items()), total=len(cases))


@radiomics_app.command("study")
def study(
    features: Path = typer.Argument(..., metavar="FEATURES.csv", help="Output of 'medxai radiomics extract'."),
    labels: Path = typer.Option(..., "--labels", help="CSV with case_id,label (two classes), e.g. labels.csv."),
    out: Path = options.out_option("Folder for auc.csv, auc_vs_distance.png, top_features.csv, study.json."),
    classifiers: str = typer.Option("rf,lr,knn", "--classifiers", help="Comma-separated: rf, lr, knn."),
    folds: int = typer.Option(5, "--folds", help="Stratified folds."),
    repeats: int = typer.Option(5, "--repeats", help="Repeats of the cross-validation."),
    k_best: int = typer.Option(10, "--k-best", help="Features kept by the in-fold ANOVA-F selection."),
    positive: Optional[str] = typer.Option(None, "--positive", help="The positive class (default: guessed, e.g. malignant)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds and the random forest."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Repeated stratified CV AUC (95% CI) per region x distance x classifier."""
    from medxai.radiomics.study import run_study

    names = [c.strip() for c in classifiers.split(",") if c.strip()]
    with console.progress() as progress:
        summary = run_study(features, labels, out, classifiers=names, folds=folds, repeats=repeats, seed=seed,
                            k_best=k_best, positive=positive, progress=progress)
    if json_output:
        console.print_json(summary)
        return
    best = summary["best"]
    typer.echo(f"best: {best['region']} {best['distance_mm']:g} mm {best['classifier']} AUC {best['auc']:.3f} "
               f"(95% CI {best['ci_low']:.3f}-{best['ci_high']:.3f}); tables and plot in {out}")


@radiomics_app.command("ibsi-check")
def ibsi_check(
    data: Optional[Path] = typer.Option(None, "--data", help="IBSI-1 data folder (phantoms + reference_values/); default $MEDXAI_TEST_DATA/ibsi."),
    configurations: str = typer.Option("digital,A,B,C,D,E", "--configurations", help="Comma-separated: digital, A, B, C, D, E."),
    details: bool = typer.Option(False, "--details", help="Also list every feature outside the tolerance."),
    json_output: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """IBSI-1 compliance: the phantoms through the ibsi presets, features compared / within tolerance per family."""
    import os

    from medxai.errors import ConfigError, InvalidInputError
    from medxai.radiomics.ibsi_reference import CONFIGURATIONS, FAMILIES, run_configuration

    if data is None:
        if not os.environ.get("MEDXAI_TEST_DATA"):
            raise ConfigError("give --data (the IBSI-1 data folder) or set MEDXAI_TEST_DATA")
        data = Path(os.environ["MEDXAI_TEST_DATA"]) / "ibsi"
    if not (data / "reference_values").is_dir():
        raise InvalidInputError("not an IBSI-1 data folder (no reference_values/)", path=data)
    names = [c.strip() for c in configurations.split(",") if c.strip()]
    unknown = [n for n in names if n not in CONFIGURATIONS]
    if unknown or not names:
        raise ConfigError(f"unknown configuration(s) {', '.join(unknown) or '(none)'} (choose from {', '.join(CONFIGURATIONS)})")
    reports = [run_configuration(name, data) for name in names]
    if json_output:
        console.print_json([{"configuration": r.name, "preset": r.preset, "reference": r.has_reference,
                             "families": {f: dict(zip(("compared", "within"), c)) for f, c in r.counts().items()},
                             "compared": r.total()[0], "within": r.total()[1]} for r in reports])
        return
    for report in reports:
        if not report.has_reference:
            typer.echo(f"{report.name} ({report.preset}): no reference table; {len(report.comparisons)} features computed")
            continue
        compared, within = report.total()
        typer.echo(f"{report.name} ({report.preset}): {within}/{compared} within tolerance ({100 * within / max(compared, 1):.1f} %)")
        counts = report.counts()
        typer.echo("  " + "  ".join(f"{f} {counts[f][1]}/{counts[f][0]}" for f in FAMILIES if f in counts))
        if details:
            for item in report.comparisons:
                if item.reference is not None and not item.within:
                    typer.echo(f"    {item.tag}: {item.value:.6g} vs {item.reference.value:g} +- {item.reference.tolerance:g}")


def register(app: typer.Typer) -> None:
    app.add_typer(radiomics_app, name="radiomics")
