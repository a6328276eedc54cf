"""Pipeline files: every shipped one validates; precedence, inheritance and clear one-line errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from medxai.errors import ConfigError
from medxai.pipeline.schema import SECTIONS, load_pipeline, shipped_pipelines

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((PROJECT_ROOT / "pipelines").glob("*.yaml"))


def test_the_project_ships_the_documented_pipelines():
    names = {path.stem for path in SHIPPED}
    assert {"classify-explain-report", "radiomics-peritumoral", "weakseg"} <= names
    assert any("inherits_from" in path.read_text() for path in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_pipeline_validates(path):
    pipeline = load_pipeline(path)
    assert pipeline.name == path.stem
    assert set(pipeline.sections) == set(SECTIONS)
    assert any(values.get("enabled") for values in pipeline.sections.values())


def test_shipped_pipelines_are_found_by_name_from_the_package():
    assert set(shipped_pipelines()) == {path.stem for path in SHIPPED}
    assert load_pipeline("weakseg").source == (PROJECT_ROOT / "pipelines" / "weakseg.yaml").resolve()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_precedence_is_defaults_then_parent_then_file_then_set(tmp_path, monkeypatch):
    write(tmp_path, "base.yaml", "explain:\n  enabled: true\n  seed: 5\n  batch_size: 2\nmodel:\n  path: models/m1\n")
    child = write(tmp_path, "child.yaml", "inherits_from: base.yaml\nexplain:\n  seed: 7\n  methods: [saliency]\n")
    monkeypatch.chdir(tmp_path)
    pipeline = load_pipeline(child, overrides=["explain.batch_size=16", "model.device=cuda:1", "score.enabled=true"])
    explain = pipeline["explain"]
    assert explain["enabled"] is True              # from the parent
    assert explain["seed"] == 7                    # the file beats the parent
    assert explain["methods"] == ["saliency"]
    assert explain["batch_size"] == 16             # --set beats the file, parsed as a YAML int
    assert explain["target"] == "predicted"        # default
    assert pipeline["model"]["device"] == "cuda:1"
    assert pipeline["score"]["enabled"] is True
    # a relative path in a file is relative to that file
    assert pipeline["model"]["path"] == (tmp_path / "models" / "m1").resolve()
    assert pipeline.name == "child"


def test_set_parses_yaml_lists_and_resolves_paths_against_the_working_folder(tmp_path, monkeypatch):
    path = write(tmp_path / "", "p.yaml", "name: mine\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    pipeline = load_pipeline(path, overrides=["explain.methods=[gradcam, occlusion]", "model.path=runs/m",
                                              "radiomics.expansions=[0, 2.5]", "name=renamed"])
    assert pipeline["explain"]["methods"] == ["gradcam", "occlusion"]
    assert pipeline["model"]["path"] == (work / "runs" / "m").resolve()
    assert pipeline["radiomics"]["expansions"] == [0, 2.5]
    assert pipeline.name == "renamed"


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("explain:\n  methdos: [saliency]\n", [], "unknown key 'explain.methdos'"),
        ("explian:\n  enabled: true\n", [], "unknown key 'explian'"),
        ("explain:\n  seed: abc\n", [], "key 'explain.seed': expected an integer"),
        ("explain:\n  enabled: yes please\n", [], "key 'explain.enabled': expected true or false"),
        ("explain:\n  batch_size: 0\n", [], "key 'explain.batch_size': expected a value >= 1"),
        ("radiomics:\n  mask: lungs\n", [], "key 'radiomics.mask': expected one of input, segment"),
        ("model:\n  device: gpu\n", [], "key 'model.device'"),
        ("explain: [1, 2]\n", [], "key 'explain': expected a section"),
        ("explain:\n  seed: [1\n", [], "not valid YAML: line"),
        ("", ["explain.sead=3"], "--set explain.sead=3: unknown key 'explain.sead'"),
        ("", ["nosection.key=3"], "--set nosection.key=3: unknown key 'nosection.key'"),
        ("", ["explain.seed=three"], "--set explain.seed=three: key 'explain.seed': expected an integer"),
        ("", ["explain.seed"], "--set explain.seed: expected section.key=value"),
    ],
)
def test_schema_errors_name_the_file_and_the_key(tmp_path, text, overrides, expected):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as raised:
        load_pipeline(path, overrides=overrides)
    message = str(raised.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "\n" not in message


def test_errors_in_a_parent_name_the_parent_file(tmp_path):
    parent = write(tmp_path, "parent.yaml", "score:\n  sed: 1\n")
    child = write(tmp_path, "child.yaml", "inherits_from: parent.yaml\n")
    with pytest.raises(ConfigError, match=f"^{parent}: unknown key 'score.sed'"):
        load_pipeline(child)


def test_inheritance_cycles_are_detected(tmp_path):
    write(tmp_path, "a.yaml", "inherits_from: b.yaml\n")
    write(tmp_path, "b.yaml", "inherits_from: c.yaml\n")
    write(tmp_path, "c.yaml", "inherits_from: a.yaml\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: key 'inherits_from': inheritance cycle a\.yaml -> b\.yaml -> c\.yaml -> a\.yaml"):
        load_pipeline(tmp_path / "a.yaml")
    write(tmp_path, "self.yaml", "inherits_from: self.yaml\n")
    with pytest.raises(ConfigError, match="inheritance cycle self.yaml -> self.yaml"):
        load_pipeline(tmp_path / "self.yaml")


def test_a_missing_parent_is_named(tmp_path):
    child = write(tmp_path, "child.yaml", "inherits_from: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=f"^{child}: key 'inherits_from': no such pipeline file"):
        load_pipeline(child)


def test_an_unknown_pipeline_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="shipped pipelines: .*weakseg"):
        load_pipeline("no-such-pipeline")
