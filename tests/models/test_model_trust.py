"""Trust model: loading a model runs no code from its folder unless --trust-model is given.

Every hostile bundle here carries a payload that creates a marker file when MONAI's own ConfigParser
evaluates it; the tests check through the real CLI that it is refused (exit 4, one line naming the bundle
config) and that the marker never appears, and that the same bundle does run its payload with
--trust-model (so the payload is live and the flag is the opt-in)."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import Classifier

from medxai.errors import InvalidInputError
from medxai.models import model_dir
from medxai.models.bundle_config import BundleConfig
from medxai.models.model_dir import MODEL_JSON, load_model, save_model_dir
from medxai.models.preprocessing import PreprocessingConfig
from medxai.models.registry import build_network

CLASSIFIER = {"_target_": "Classifier", "in_shape": [1, 16, 16, 16], "classes": 2, "channels": [4, 8], "strides": [2, 2]}


class _Payload:
    """Unpickling this runs os.system (a pickle a model folder could carry)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def _scan(folder: Path) -> Path:
    path = folder / "scan.nii.gz"
    data = np.random.default_rng(0).normal(size=(12, 14, 10)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.2, 2.0, 1.0])), path)
    return path


def _bundle(folder: Path, inference: dict[str, Any], *, weights: bool = True) -> Path:
    """A bundle folder with ``inference``, metadata and (for the plain Classifier) matching model.pt weights."""
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "configs" / "inference.json").write_text(json.dumps(inference))
    metadata = {"network_data_format": {"inputs": {"image": {"num_channels": 1, "spatial_shape": [16, 16, 16]}},
                                        "outputs": {"pred": {"channel_def": {"0": "normal", "1": "lesion"}}}}}
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata))
    if weights:
        torch.manual_seed(0)
        network = Classifier(in_shape=(1, 16, 16, 16), classes=2, channels=(4, 8), strides=(2, 2))
        torch.save(network.state_dict(), folder / "models" / "model.pt")
    return folder


def _os_system(marker: Path) -> dict[str, Any]:
    return {"_target_": "torch.nn.functional.torch.os.system", "command": f"touch {marker}"}


def _attacks(tmp_path: Path, marker: Path) -> dict[str, dict[str, Any]]:
    """name -> inference.json whose network_def makes MONAI's parser create ``marker``."""
    touch = f"$__import__('os').system('touch {marker}')"
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(pickle.dumps(_Payload(f"touch {marker}")))
    (tmp_path / "macro.json").write_text(json.dumps({"channels": f"{touch} or [4, 8]"}))
    return {
        "attribute-walk-to-os.system": {"network_def": _os_system(marker)},
        "os.system-nested-in-a-kwarg": {"network_def": dict(CLASSIFIER, act=_os_system(marker))},
        "torch.load-of-a-pickle": {"network_def": {
            "_target_": "torch.nn.modules.module.torch.load", "f": str(payload), "weights_only": False}},
        "dollar-expression": {"network_def": dict(CLASSIFIER, channels=f"{touch} or [4, 8]")},
        "requires": {"network_def": dict(CLASSIFIER, _requires_=touch)},
        "percent-macro": {"network_def": dict(CLASSIFIER, channels=f"%{tmp_path / 'macro.json'}::channels")},
        "reference-to-an-expression": {"evil": f"{touch} or 2", "network_def": dict(CLASSIFIER, classes="@evil")},
    }


ATTACKS = ["attribute-walk-to-os.system", "os.system-nested-in-a-kwarg", "torch.load-of-a-pickle", "dollar-expression",
           "requires", "percent-macro", "reference-to-an-expression"]


def _one_line_error(result: Any, needle: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 4, result.stderr
    assert len(lines) == 1 and lines[0].startswith("medxai: error: ") and "Traceback" not in result.stderr, result.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["predict", "explain"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_hostile_bundles_are_refused_and_run_nothing(tmp_path: Path, cli: Callable[..., Any], attack: str,
                                                     command: str) -> None:
    marker = tmp_path / "pwned"
    bundle = _bundle(tmp_path / "bundle", _attacks(tmp_path, marker)[attack])
    out = tmp_path / "out"
    extra = ["-o", str(out)] if command == "explain" else []
    result = cli(command, bundle, _scan(tmp_path), *extra)
    line = _one_line_error(result, str(bundle / "configs" / "inference.json"))
    assert "--trust-model" in line
    assert not marker.exists(), f"{attack}: the payload ran"
    assert not out.exists() and result.stdout == ""


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_payloads_are_live_under_monai_own_parser(tmp_path: Path, cli: Callable[..., Any], attack: str) -> None:
    """--trust-model hands the config to MONAI's ConfigParser, which runs each payload: the refusals above
    are refusals of real code execution, and the flag is the explicit opt-in."""
    marker = tmp_path / "pwned"
    bundle = _bundle(tmp_path / "bundle", _attacks(tmp_path, marker)[attack])
    cli("predict", bundle, _scan(tmp_path), "--trust-model")
    assert marker.exists()


def test_hostile_yaml_bundles_are_refused(tmp_path: Path, cli: Callable[..., Any]) -> None:
    marker = tmp_path / "pwned"
    bundle = _bundle(tmp_path / "bundle", {})
    (bundle / "configs" / "inference.json").unlink()
    config = bundle / "configs" / "inference.yaml"
    config.write_text(f"network_def: !!python/object/apply:os.system ['touch {marker}']\n")
    _one_line_error(cli("predict", bundle, _scan(tmp_path)), str(config))
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))
    config.write_text(bomb + "network_def: *i\n")
    assert "more than 16 aliases" in _one_line_error(cli("predict", bundle, _scan(tmp_path)), str(config))
    assert not marker.exists()


def test_targets_are_checked_as_resolved_classes() -> None:
    """A name under an allowed prefix that is not an nn.Module class from torch.nn/monai.networks is refused."""
    for target in ("torch.nn.functional.relu", "torch.nn.functional.torch", "torch.nn.init.torch.nn.Module",
                   "monai.networks.nets.os", "torch.nn.modules.module.Tensor", "os.system", "Compose", "$1", 5):
        config = BundleConfig({"network_def": {"_target_": target}}, Path("inference.json"))
        with pytest.raises(InvalidInputError, match="not a (network class|class name)"):
            config.build_network()


def test_references_are_bounded_and_cycles_refused() -> None:
    cyclic = BundleConfig({"a": "@b", "b": "@a", "network_def": dict(CLASSIFIER, classes="@a")}, Path("c.json"))
    with pytest.raises(InvalidInputError, match="circular"):
        cyclic.build_network()
    missing = BundleConfig({"network_def": dict(CLASSIFIER, classes="@nowhere")}, Path("c.json"))
    with pytest.raises(InvalidInputError, match="names nothing"):
        missing.build_network()
    huge = BundleConfig({"network_def": {"_target_": "torch.nn.Linear", "in_features": 10**6, "out_features": 10**6}},
                        Path("c.json"))
    with pytest.raises(InvalidInputError, match="parameters"):
        huge.build_network()


def test_nested_components_build_like_monai(tmp_path: Path) -> None:
    """A legitimate bundle with a component passed by reference into another builds the same network
    MONAI's parser builds, loads its weights and predicts through the CLI without --trust-model."""
    inference = {
        "backbone": {"_target_": "monai.networks.nets.ResNet", "block": "basic", "layers": [1, 1, 1, 1],
                     "block_inplanes": [4, 8, 16, 32], "spatial_dims": 3, "n_input_channels": 1, "num_classes": 2},
        "network_def": {"_target_": "NetAdapter", "model": "@backbone", "num_classes": 2, "dim": 3,
                        "in_channels": 32, "use_conv": False, "pool": None},
    }
    bundle = _bundle(tmp_path / "bundle", inference, weights=False)
    torch.manual_seed(5)
    reference = ConfigParser(inference).get_parsed_content("network_def").eval()
    torch.save(reference.state_dict(), bundle / "models" / "model.pt")
    loaded = load_model(bundle)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.network(x), reference(x), atol=1e-6)
    assert loaded.classes == ["normal", "lesion"] and loaded.info["trusted"] is False


def test_legitimate_bundle_predicts_without_the_flag(tmp_path: Path, cli: Callable[..., Any]) -> None:
    bundle = _bundle(tmp_path / "bundle", {"network_def": CLASSIFIER})
    result = cli("predict", bundle, _scan(tmp_path), "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 1 and set(rows[0]["probabilities"]) == {"normal", "lesion"}
    assert abs(sum(rows[0]["probabilities"].values()) - 1.0) < 1e-5


def test_torchscript_needs_the_flag(tmp_path: Path, cli: Callable[..., Any]) -> None:
    torch.manual_seed(1)
    network = build_network("tiny", in_channels=1, num_classes=2, spatial_size=(16, 16, 16)).eval()
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(network), str(path))
    scan = _scan(tmp_path)
    refused = cli("predict", path, scan, "--spatial-size", "16")
    assert "TorchScript" in _one_line_error(refused, str(path)) and "--trust-model" in refused.stderr
    trusted = cli("predict", path, scan, "--spatial-size", "16", "--json", "--trust-model")
    assert trusted.exit_code == 0, trusted.stderr
    assert set(json.loads(trusted.stdout)[0]["probabilities"]) == {"class_0", "class_1"}
    bundle = _bundle(tmp_path / "bundle", {"network_def": CLASSIFIER}, weights=False)
    torch.jit.save(torch.jit.script(Classifier(in_shape=(1, 16, 16, 16), classes=2, channels=(4, 8), strides=(2, 2))),
                   str(bundle / "models" / "model.ts"))
    _one_line_error(cli("predict", bundle, scan), str(bundle / "models" / "model.ts"))
    assert cli("predict", bundle, scan, "--trust-model").exit_code == 0


def _saved(folder: Path) -> Path:
    save_model_dir(folder, network=build_network("tiny", in_channels=1, num_classes=3, spatial_size=(16, 16, 16)),
                   arch="tiny", classes=["a", "b", "c"], task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=(16, 16, 16)), training={}, metrics={})
    return folder / MODEL_JSON


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(info: dict[str, Any]) -> None:
        target = info
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


ABSURD: dict[str, Callable[[dict[str, Any]], None]] = {
    "num_classes-1e9": _set(("arch_kwargs", "num_classes"), 10**9),
    "num_classes-0": _set(("arch_kwargs", "num_classes"), 0),
    "num_classes-negative": _set(("arch_kwargs", "num_classes"), -3),
    "num_classes-text": _set(("arch_kwargs", "num_classes"), "3"),
    "num_classes-float": _set(("arch_kwargs", "num_classes"), 3.0),
    "classes-huge": _set(("classes",), [f"c{i}" for i in range(5000)]),
    "classes-not-a-list": _set(("classes",), "abc"),
    "in_channels-huge": _set(("arch_kwargs", "in_channels"), 10**6),
    "spatial_size-huge": _set(("arch_kwargs", "spatial_size"), [10**6, 16, 16]),
    "spatial_size-zero": _set(("arch_kwargs", "spatial_size"), [0, 16, 16]),
    "spatial_size-negative": _set(("arch_kwargs", "spatial_size"), [-16, 16, 16]),
    "spatial_size-float": _set(("arch_kwargs", "spatial_size"), [16.5, 16, 16]),
    "spatial_size-two-axes": _set(("arch_kwargs", "spatial_size"), [16, 16]),
    "spatial_size-too-many-voxels": _set(("arch_kwargs", "spatial_size"), [1024, 1024, 1024]),
    "preprocessing-spatial_size-huge": _set(("preprocessing", "spatial_size"), [16, 10**7, 16]),
    "spacing-zero": _set(("preprocessing", "spacing"), [0, 1, 1]),
    "spacing-tiny": _set(("preprocessing", "spacing"), [1e-9, 1, 1]),
    "arch-unknown": _set(("arch",), "resnet999"),
    "arch-not-a-name": _set(("arch",), 5),
    "arch_kwargs-not-an-object": _set(("arch_kwargs",), [1, 2]),
    "task-unknown": _set(("task",), "regression"),
}


@pytest.mark.parametrize("case", list(ABSURD) + ["nesting-bomb", "not-an-object", "oversized", "fifo"])
def test_absurd_model_descriptions_are_refused_before_building(
    tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    description = _saved(tmp_path / "model")

    def no_build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a network was built from an absurd description")

    monkeypatch.setattr(model_dir, "build_network", no_build)
    if case in ABSURD:
        info = json.loads(description.read_text())
        ABSURD[case](info)
        description.write_text(json.dumps(info))
    elif case == "nesting-bomb":
        description.write_text("[" * 200_000 + "]" * 200_000)
    elif case == "not-an-object":
        description.write_text("[]")
    elif case == "oversized":
        description.write_text(" " * (5 << 20) + "{}")
    else:
        description.unlink()
        os.mkfifo(description)  # reading it would block forever
    named = tmp_path / "model" if case == "fifo" else description
    _one_line_error(cli("predict", tmp_path / "model", _scan(tmp_path)), str(named))


def test_a_pipeline_refuses_a_hostile_bundle_unless_model_trust_is_set(tmp_path: Path, cli: Callable[..., Any]) -> None:
    marker = tmp_path / "pwned"
    bundle = _bundle(tmp_path / "bundle", {"network_def": _os_system(marker)})
    (tmp_path / "in").mkdir()
    _scan(tmp_path / "in")
    run = ["run", "classify-explain-report", "-i", tmp_path / "in", "--set", f"model.path={bundle}",
           "--set", "model.predict=true", "--set", "explain.enabled=false", "--set", "report.enabled=false"]
    _one_line_error(cli(*run, "-o", tmp_path / "out"), str(bundle / "configs" / "inference.json"))
    assert not marker.exists() and not (tmp_path / "out").exists()
    cli(*run, "-o", tmp_path / "trusted", "--set", "model.trust=true")
    assert marker.exists()


@pytest.mark.parametrize("argument", [{"pretrained": True}, {"pretrained_url": "http://203.0.113.1/w.pth"}])
def test_arguments_that_fetch_weights_are_refused(argument: dict[str, Any]) -> None:
    """A bundle's weights are its models/model.pt: a class asked to download (or read) others is refused."""
    network_def = {"_target_": "DenseNet121", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, **argument}
    with pytest.raises(InvalidInputError, match="fetch weights"):
        BundleConfig({"network_def": network_def}, Path("inference.json")).build_network()
