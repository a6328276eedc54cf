"""One option vocabulary across the commands (issue 25): every writer takes -o/--out (--output stays a hidden
alias), every model-loading command takes the same model options with --device auto, every option has help."""
from __future__ import annotations

import pytest
import typer

from medxai.cli.main import app, canonical_args

WRITERS = ("convert", "train", "predict", "explain", "score", "validate", "segment", "report", "run", "demo",
           "export-dicom", "radiomics extract", "radiomics study")
MODEL_COMMANDS = ("predict", "explain", "score", "segment")
SHARED_MODEL_OPTIONS = ("--device", "--trust-model", "--classes", "--spatial-size", "--spacing", "--intensity", "--overlap",
                        "--blend", "--sw-batch-size")


def _commands() -> dict:
    root = typer.main.get_command(app)
    found: dict = {}

    def walk(group, prefix: str) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a group (Typer bundles its own Click: no isinstance)
                walk(command, f"{prefix}{name} ")
            else:
                found[f"{prefix}{name}"] = command

    walk(root, "")
    return found


def _is_option(param) -> bool:
    return param.param_type_name == "option"


def _option(command, name: str):
    return next((p for p in command.params if _is_option(p) and name in p.opts), None)


@pytest.mark.parametrize("name", WRITERS)
def test_every_writer_takes_o_and_out(name):
    option = _option(_commands()[name], "--out")
    assert option is not None and "-o" in option.opts, f"{name}: -o/--out missing"
    assert not any("--output" in p.opts for p in _commands()[name].params), f"{name}: --output is visible"


def test_every_option_has_help_text():
    missing = [f"{name} {param.opts[0]}" for name, command in _commands().items() for param in command.params
               if _is_option(param) and not param.hidden and not (param.help or "").strip()]
    assert missing == []


@pytest.mark.parametrize("name", MODEL_COMMANDS)
def test_model_commands_share_the_model_options(name):
    command = _commands()[name]
    for flag in SHARED_MODEL_OPTIONS:
        assert _option(command, flag) is not None, f"{name} lacks {flag}"
    assert _option(command, "--device").default == "auto"
    helps = {flag: _option(command, flag).help for flag in SHARED_MODEL_OPTIONS}
    assert helps == {flag: _option(_commands()["predict"], flag).help for flag in SHARED_MODEL_OPTIONS}


def test_segment_and_train_default_to_device_auto():
    for name in ("segment", "train"):
        assert _option(_commands()[name], "--device").default == "auto"


def test_output_is_rewritten_to_out_but_not_after_double_dash():
    assert canonical_args(["score", "m", "s", "--output", "x.csv"]) == ["score", "m", "s", "--out", "x.csv"]
    assert canonical_args(["score", "--output=x.csv"]) == ["score", "--out=x.csv"]
    assert canonical_args(["info", "--", "--output"]) == ["info", "--", "--output"]


def test_hidden_output_alias_reaches_the_command(cli, tmp_path):
    result = cli("sample-data", tmp_path / "cohort", "--cases", "2", "--size", "16")
    assert result.exit_code == 0, result.stderr
    scan = tmp_path / "cohort" / "images" / "case_0001.nii.gz"
    converted = cli("convert", scan, "--output", tmp_path / "converted")
    assert converted.exit_code == 0, converted.stderr
    assert list((tmp_path / "converted").glob("*.nii.gz"))


def test_run_help_lists_every_shipped_pipeline(cli):
    from medxai.pipeline.shipped import shipped_pipelines

    text = " ".join(cli("run", "--help").stdout.split())
    for name in shipped_pipelines():
        assert name in text.replace("- ", "-")


def test_the_shared_model_options_are_every_field_of_model_options():
    from dataclasses import fields

    from medxai.cli.options import _MODEL_OPTIONS, ModelOptions

    assert set(_MODEL_OPTIONS) == {field.name for field in fields(ModelOptions)}


def test_cli_start_up_loads_no_heavy_library():
    """``medxai --help`` (and every command's registration) stays light: listing the shipped pipelines in
    ``run --help`` must not pull in the schema, nibabel, torch or MONAI."""
    import subprocess
    import sys

    code = ("import sys, medxai.cli.main; "
            "print(sorted(m for m in ('torch', 'monai', 'nibabel', 'SimpleITK', 'medxai.pipeline.schema') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
