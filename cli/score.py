"""``medxai score`` and ``medxai validate``: how faithful, robust, sane and well-localised explanations are."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from . import console, options

# (key, header) in the order columns are given room on a narrow terminal: the verdict and what it rests on
# first; columns that do not fit are named under the table (the CSV and --json keep every column)
_TABLE_COLUMNS = (
    ("case_id", "case"), ("method", "method"), ("verdict", "verdict"), ("sanity", "random."), ("auroc", "AUROC"),
    ("pointing_game", "peak in"), ("infidelity", "infid."), ("deletion_auc", "del.AUC"), ("max_sensitivity", "max-sens."),
    ("mass_in_mask", "mass in"), ("com_distance_mm", "CoM mm"), ("insertion_auc", "ins.AUC"), ("sanity_spearman", "rand.rho"),
)
_ALWAYS = 3  # case, method and verdict are shown whatever the width
_VERDICT_STYLE = {"trusted": "green", "caution": "yellow", "do-not-use": "bold red", "inconclusive": "dim"}


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _table_cell(row: dict[str, Any], key: str) -> str:
    """A cell of the score table: the randomisation check as pass/FAIL/inconcl., yes/no for the pointing
    game, numbers to 3 significant digits."""
    if key == "sanity":
        status = row.get("sanity_status") or {True: "pass", False: "fail"}.get(row.get("sanity_pass"), "")
        words = {"pass": "pass", "fail": "[bold red]FAIL[/bold red]", "inconclusive": "inconcl."}
        return words.get(str(status), str(status) or "-")
    if key == "verdict" and row.get("verdict") in _VERDICT_STYLE:
        return f"[{_VERDICT_STYLE[row['verdict']]}]{row['verdict']}[/]"
    if key == "pointing_game" and row.get(key) is not None and not (isinstance(row[key], float) and math.isnan(row[key])):
        return "yes" if bool(row[key]) else "no"
    return _cell(row.get(key))


def _score_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, collapse_padding=True,
                  show_edge=False, title_justify="left")
    for key, label in columns:
        table.add_column(label, justify="left" if key in ("case_id", "method", "verdict") else "right",
                         overflow="fold")
    for row in rows:
        table.add_row(*[_table_cell(row, key) for key, _ in columns])
    return table


def print_table(rows: list[dict[str, Any]], *, title: str) -> None:
    """The scores as a table that fits the terminal (80 columns included): case, method and verdict always,
    then as many of the other columns as fit, in the order of :data:`_TABLE_COLUMNS`; a line under the table
    names those left out. A failed randomisation check is marked FAIL in red."""
    from rich.measure import Measurement

    out = console.stdout
    sources = {"sanity": ("sanity_status", "sanity_pass")}
    present = [(key, label) for key, label in _TABLE_COLUMNS
               if any(name in row for row in rows for name in sources.get(key, (key,)))]
    columns = present[:_ALWAYS]
    left_out = []
    unbounded = out.options.update(width=10_000)
    for column in present[_ALWAYS:]:
        if Measurement.get(out, unbounded, _score_table(rows, [*columns, column], "")).maximum <= out.width:
            columns.append(column)
        else:
            left_out.append(column[1])
    out.print(_score_table(rows, columns, title))
    if left_out:
        out.print(f"not shown at this width: {', '.join(left_out)} (every column is in the CSV and with --json)",
                  markup=False, soft_wrap=False)


def print_ranking(summary: dict[str, Any], *, models: list[dict[str, Any]]) -> None:
    """The benchmark's ranking as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    metric = summary["rank_by"]
    table = Table(title=f"explainer ranking by {metric} (mean [95% CI]); models: " + ", ".join(
        f"seed {m['seed']} test AUC {_cell(m['test_auc'])}" for m in models))
    for label in ("rank", "method", metric, "rank CI", "pointing", "AUROC", "CoM dist mm", "del. AUC", "ins. AUC", "sanity"):
        table.add_column(label, justify="left" if label == "method" else "right")
    for entry in summary["ranking"]:
        verdict = {True: "pass", False: "[bold red]FAIL[/bold red]"}.get(entry.get("sanity_pass"), "-")
        table.add_row(
            str(entry["rank"]), entry["method"],
            f"{_cell(entry[metric])} [{_cell(entry[metric + '_low'])}, {_cell(entry[metric + '_high'])}]",
            f"{entry['rank_low']:g}-{entry['rank_high']:g}", _cell(entry.get("pointing_game")), _cell(entry.get("auroc")),
            _cell(entry.get("com_distance_mm")), _cell(entry.get("deletion_auc")), _cell(entry.get("insertion_auc")), verdict,
        )
    # a file or pipe gets the whole table, not one wrapped to 80 columns
    out = console.stdout if console.stdout.is_terminal else Console(width=200, highlight=False, soft_wrap=True)
    out.print(table)


def print_verdicts(summary: dict[str, Any]) -> None:
    """How often the maps of each verdict (given without the mask) localise the known lesion, with 95% CIs."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="do the verdicts agree with the known lesions? (verdict given without the mask; mean [95% CI])")
    for label in ("verdict", "maps", "peak in lesion", "AUROC >= 0.6", "AUROC"):
        table.add_column(label, justify="left" if label == "verdict" else "right")
    for entry in summary["verdicts"]:
        cells = [f"{_cell(entry.get(key))} [{_cell(entry.get(key + '_low'))}, {_cell(entry.get(key + '_high'))}]"
                 if entry["maps"] else "-" for key in ("pointing_game", "auroc_at_least_0_6", "auroc")]
        table.add_row(entry["verdict"], str(entry["maps"]), *cells)
    out = console.stdout if console.stdout.is_terminal else Console(width=200, highlight=False, soft_wrap=True)
    out.print(table)


def warn_failed_sanity(rows: list[dict[str, Any]]) -> None:
    failed = sorted({row["method"] for row in rows if row.get("sanity_pass") is False})
    if failed:
        console.info(f"warning: {', '.join(failed)} failed the model-randomisation sanity check: the map barely "
                     "changes when the model's weights are destroyed, so it does not show what the model learned")


def register(app: typer.Typer) -> None:
    @app.command("score")
    @options.with_model_options
    def score(
        model_dir: Path = typer.Argument(..., metavar="MODEL_DIR", help="Model directory (or TorchScript file)."),
        scans: List[str] = typer.Argument(..., metavar="SCAN...", help="Scans to explain and score (one case each; 'a.nii.gz;b.nii.gz' for several channels)."),
        methods: List[str] = typer.Option([], "--method", "-m", help="Attribution method (repeat); default smoothgrad."),
        masks: List[Path] = typer.Option([], "--mask", help="Ground-truth mask on the scan's grid, one per SCAN in order."),
        output: Path = options.out_option("scores.csv to write (one row per case x method)."),
        target: str = typer.Option("predicted", "--target", help="'predicted' or a class name."),
        seed: int = typer.Option(0, "--seed", help="Seed of every random perturbation and randomisation."),
        tolerance_mm: float = typer.Option(0.0, "--tolerance-mm", min=0.0, help="Pointing-game tolerance in mm."),
        sanity_threshold: float = typer.Option(0.5, "--sanity-threshold", help="Fail when the top-5% regions of the map and of the fully randomised model's map overlap (Dice) >= this."),
        sensitivity: bool = typer.Option(True, "--sensitivity/--no-sensitivity", help="Compute max-sensitivity (explains perturbed copies)."),
        sanity: bool = typer.Option(True, "--sanity/--no-sanity", help="Run the model-randomisation sanity check."),
        json_output: bool = typer.Option(False, "--json", help="Print the rows (with the sanity cascade) as JSON."),
        model_options: options.ModelOptions = options.ModelOptions(),
    ) -> None:
        """Faithfulness (infidelity, deletion), robustness (max-sensitivity), sanity and, with masks, localisation in mm."""
        from medxai.attribution.defaults import DEFAULT_METHOD
        from medxai.metrics.model_grid import ScoreSettings
        from medxai.metrics.scoring import json_ready, score_cases, score_columns, write_scores_csv

        settings = ScoreSettings(tolerance_mm=tolerance_mm, sanity_threshold=sanity_threshold, sensitivity=sensitivity, sanity=sanity)
        model, = model_options.load([model_dir])
        with console.progress() as progress:
            rows, failures = score_cases(model, scans, methods=methods or [DEFAULT_METHOD], masks=masks, seed=seed,
                                         target=target, settings=settings, progress=progress)
        if failures and not rows and len(failures) == 1:
            raise failures[0][1]
        write_scores_csv(rows, output, columns=score_columns(settings, with_mask=bool(masks)))
        warn_failed_sanity(rows)
        if json_output:
            console.print_json(json_ready(rows))
        elif sys.stdout.isatty():
            print_table(rows, title=f"scores ({output})")
        console.info(f"wrote {len(rows)} rows to {output}")
        console.report_failed(failures, total=len(scans))

    @app.command("validate")
    def validate(
        output: Path = options.out_option("Folder for validate.csv, validate.json, validate.png."),
        quick: bool = typer.Option(False, "--quick", help="A smoke-test size (one seed, a few 16^3 phantoms, two methods)."),
        seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Independently trained models (default 3)."),
        cases: Optional[int] = typer.Option(None, "--cases", min=4, help="Training phantoms per seed (default 128)."),
        test_cases: Optional[int] = typer.Option(None, "--test-cases", min=2, help="Held-out phantoms per seed, half with a lesion (default 16)."),
        epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Training epochs per seed (default 12)."),
        size: Optional[int] = typer.Option(None, "--size", min=16, help="Phantom size in 1 mm voxels (default 24)."),
        methods: List[str] = typer.Option([], "--method", "--methods", "-m", help="Methods to rank (repeat); default all."),
        rank_by: Optional[str] = typer.Option(None, "--rank-by", help="Ranking metric (default mass_in_mask)."),
        seed: int = typer.Option(0, "--seed", help="First seed; seeds are SEED, SEED+1, ..."),
        json_output: bool = typer.Option(False, "--json", help="Print the ranking as JSON."),
    ) -> None:
        """Known-ground-truth benchmark: train on phantoms whose lesion decides the label, rank the explainers."""
        from medxai.validation.benchmark import ValidateSettings, run_validation
        from medxai.metrics.scoring import json_ready
        from medxai.validation.report import write_outputs

        given = {"seeds": seeds, "cases": cases, "test_cases": test_cases, "epochs": epochs, "size": size,
                 "rank_by": rank_by, "methods": tuple(methods) or None, "seed": seed}
        overrides = {key: value for key, value in given.items() if value is not None}
        settings = ValidateSettings.quick(**overrides) if quick else ValidateSettings(**overrides)
        with console.progress() as progress:
            result = run_validation(settings, progress=progress)
        summary = write_outputs(result, output)
        warn_failed_sanity(summary["ranking"])
        if json_output:
            console.print_json(json_ready(summary))
        else:
            print_ranking(summary, models=result["models"])
            print_verdicts(summary)
        console.info(f"wrote {output / 'validate.csv'}, validate_verdicts.csv, validate.json, validate.png "
                     f"({result['seconds']:.0f} s)")
