"""Pipeline files: sectioned YAML checked against a hand-written schema.

Precedence is defaults < ``inherits_from`` parent(s) < the file < ``--set section.key=value`` overrides
(the layering PyRadiomics parameter files and Hydra-style overrides made familiar). Unknown keys and
wrong types are :class:`~medxai.errors.ConfigError` naming the file and the key path. Relative paths in
a file are relative to that file; relative paths given with ``--set`` are relative to the working folder.
"""
from __future__ import annotations

import copy
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from medxai.errors import ConfigError
from medxai.pipeline.shipped import shipped_pipelines
from medxai.io.data_files import parse_yaml as parse_data_yaml, yaml_problem
from medxai.attribution.defaults import DEFAULT_METHOD
from medxai.radiomics.params import PRESETS as RADIOMICS_PRESETS

# Pipeline files are a few dozen keys: these bounds refuse alias bombs ("billion laughs") and huge files fast.
MAX_FILE_BYTES = 1 << 20
MAX_NODES = 5000
PIPELINE_SUFFIXES = (".yaml", ".yml")


def parse_yaml(text: str) -> Any:
    """``text`` as plain data, within a pipeline file's budget (yaml.YAMLError when it is not)."""
    return parse_data_yaml(text, max_values=MAX_NODES)


_KINDS = ("bool", "int", "number", "str", "path", "device", "str_list", "number_list", "target", "batch_size")


@dataclass(frozen=True)
class Key:
    """One setting: its kind, default, and optional allowed values / lower bound / null."""

    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    nullable: bool = False
    names: tuple[str, ...] = ()  # for paths: names taken as they are (presets), not resolved as files

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown key kind {self.kind!r}")


def _stage(**keys: Key) -> dict[str, Key]:
    return {"enabled": Key("bool", False, "run this stage for every case"), **keys}


SECTIONS: dict[str, dict[str, Key]] = {
    "input": {
        "masks": Key("bool", True, "use the masks the input lists (CSV mask column, nnU-Net labelsTr)"),
        "mask_label": Key("int", None, "keep only this label value of a mask file (default: any non-zero)",
                          nullable=True, minimum=1),
    },
    "model": {
        "path": Key("path", None, "model directory (medxai train output)", nullable=True),
        "device": Key("device", "auto", "auto (CUDA when available), cpu, cuda or cuda:N"),
        "predict": Key("bool", False, "write prediction.json (class probabilities) for every case"),
        "trust": Key("bool", False, "load TorchScript files and MONAI bundles whose configs contain code "
                     "(--trust-model); never needed for medxai model directories"),
    },
    "explain": _stage(
        methods=Key("str_list", [DEFAULT_METHOD], "attribution methods (medxai explain --method)"),
        target=Key("target", "predicted", "'predicted' or a class name"),
        seed=Key("int", 0, "random seed of stochastic methods", minimum=0),
        batch_size=Key("batch_size", "auto", "perturbed inputs per forward pass: auto (fits free memory) or N", minimum=1),
        time_budget=Key("number", None, "seconds: a method estimated to take longer is refused before it runs "
                        "(medxai explain --time-budget)", nullable=True, minimum=0),
    ),
    "score": _stage(
        methods=Key("str_list", None, "methods to score (default: explain.methods)", nullable=True),
        target=Key("target", "predicted", "'predicted' or a class name"),
        seed=Key("int", 0, "seed of every random perturbation and randomisation", minimum=0),
        sensitivity=Key("bool", True, "compute max-sensitivity (explains perturbed copies)"),
        sanity=Key("bool", True, "run the model-randomisation sanity check"),
        sanity_threshold=Key("number", 0.5, "fail when |map| Spearman after full randomisation >= this", minimum=0),
        tolerance_mm=Key("number", 0.0, "pointing-game tolerance in mm (with input masks)", minimum=0),
    ),
    "segment": _stage(
        method=Key("str", "own", "'own' (the model's class heatmaps: gp-* models) or an attribution method"),
        threshold=Key("str", None, "multiotsu-offset[:OFFSET], multiotsu:K, body-quantile:Q, otsu, percentile:P or "
                      "fixed:T (default: the model's threshold.json rule for this method, else multiotsu-offset:0.5)",
                      nullable=True),
        refine=Key("str", "auto", "re-draw the margin from the image: otsu, fcm, gmm, kmeans, none or auto (the saved "
                   "choice, else otsu for the model's own map, none for post-hoc maps)"),
        refine_margin_mm=Key("number", 3.0, "margin in mm around the thresholded component for refine", minimum=0),
        target=Key("target", "predicted", "'predicted' or a class name"),
        negative_class=Key("str", "normal", "a case predicted as this class gets an empty mask", nullable=True),
        keep_largest=Key("bool", False, "keep only the largest connected component"),
        fill_holes=Key("bool", False, "fill holes in the mask"),
        seed=Key("int", 0, "random seed of stochastic methods", minimum=0),
    ),
    "radiomics": _stage(
        mask=Key("str", "input", "the lesion: the input's mask or the segment stage's", choices=("input", "segment")),
        expansions=Key("number_list", [0, 2, 4, 6, 8, 10, 12], "peritumoral distances in mm (0 = the lesion)",
                       minimum=0),
        params=Key("path", "ct", "PyRadiomics parameter file, or a preset: " + ", ".join(RADIOMICS_PRESETS),
                   names=RADIOMICS_PRESETS),
        tissue=Key("str", None, "clip shells to this tissue: lung or body", choices=("lung", "body"), nullable=True),
        box_dilation=Key("bool", False, "also the per-axis box dilation regions of Tushar et al. 2024"),
        save_masks=Key("bool", False, "write every region as OUT/<case_id>/regions/<region>_<d>mm.nii.gz"),
    ),
    "report": _stage(
        case_pdf=Key("bool", True, "write OUT/<case_id>/report.pdf"),
        cohort_summary=Key("bool", True, "write the one-page OUT/summary.pdf at the end of the run"),
        page_size=Key("str", "A4", "A4 or letter"),
        percentile=Key("number", 95.0, "heatmap display: values below this percentile are transparent", minimum=0),
        window=Key("str", None, "grey window of the images: soft-tissue, lung, brain, bone or WIDTH,LEVEL "
                   "(default: from the scan's modality and description; MR: 1st-99th percentile)", nullable=True),
    ),
    "dicom": {"enabled": Key("bool", False, "write OUT/<case_id>/dicom/: SEG, parametric maps, encapsulated PDF and "
                             "SR of what the other stages wrote (needs DICOM series inputs)")},
}
TOP_LEVEL: dict[str, Key] = {
    "name": Key("str", None, "pipeline name (default: the file name)", nullable=True),
    "inherits_from": Key("path", None, "pipeline file this one extends (relative to this file)", nullable=True),
}


@dataclass(frozen=True)
class Pipeline:
    """A fully resolved pipeline: every section with every key, paths absolute."""

    name: str
    source: Path
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.sections[section]

    def stage_enabled(self, section: str) -> bool:
        return bool(self.sections.get(section, {}).get("enabled", False))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (paths as strings), as written to ``OUT/run.json``."""
        return {"name": self.name, **{name: {key: _plain(value) for key, value in values.items()}
                                      for name, values in self.sections.items()}}


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def register_section(name: str, keys: Mapping[str, Key]) -> None:
    """Add the settings section of an extra stage (see :func:`medxai.pipeline.stages.register_stage`)."""
    if name in SECTIONS or name in TOP_LEVEL:
        raise ValueError(f"pipeline section {name!r} already exists")
    SECTIONS[name] = {"enabled": Key("bool", False, "run this stage for every case"), **keys}


def locate_pipeline(name_or_path: str | Path) -> Path:
    """A pipeline file path, or the name of a shipped pipeline (``classify-explain-report``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_pipelines()
    if path.suffix == "" and str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    known = ", ".join(sorted(shipped)) or "none installed"
    raise ConfigError(f"no such pipeline file (shipped pipelines: {known})", path=name_or_path)


def load_pipeline(path: str | Path, *, overrides: Iterable[str] = ()) -> Pipeline:
    """Read, inherit, validate and override a pipeline file into a :class:`Pipeline`."""
    source = locate_pipeline(path)
    values = copy.deepcopy({name: {key: spec.default for key, spec in keys.items()} for name, keys in SECTIONS.items()})
    top: dict[str, Any] = {"name": None}
    _merge(values, top, _load_chain(source, stack=()))
    for item in overrides:
        _apply_override(values, top, item, source=source)
    return Pipeline(name=top["name"] or source.name.removesuffix(".yaml"), source=source.resolve(), sections=values)


def _load_chain(path: Path, *, stack: tuple[Path, ...]) -> list[dict[str, Any]]:
    """The validated contents of ``path`` preceded by those of its ancestors (oldest first)."""
    resolved = path.resolve()
    if resolved in stack:
        cycle = " -> ".join(p.name for p in (*stack, resolved)[stack.index(resolved):])
        raise ConfigError(f"key 'inherits_from': inheritance cycle {cycle}", path=stack[-1])
    document = _read_yaml(path)
    validated = _validate_document(document, file=path)
    parent = validated.pop("inherits_from", None)
    if parent is None:
        return [validated]
    if not parent.is_file():
        raise ConfigError(f"key 'inherits_from': no such pipeline file {parent}", path=path)
    if not parent.name.lower().endswith(PIPELINE_SUFFIXES):  # never parse (and quote) an arbitrary file
        raise ConfigError(f"key 'inherits_from': {parent} is not a pipeline file (.yaml or .yml)", path=path)
    return [*_load_chain(parent, stack=(*stack, resolved)), validated]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError("no such pipeline file", path=path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"is over {MAX_FILE_BYTES // 1024} KiB: not a pipeline file", path=path)
        document = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"not valid YAML: {yaml_problem(error)}", path=path) from None
    except UnicodeDecodeError:
        raise ConfigError("cannot read the pipeline file (not UTF-8 text)", path=path) from None
    except OSError as error:
        raise ConfigError(f"cannot read the pipeline file ({error.strerror or type(error).__name__})", path=path) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"a pipeline file is a mapping of sections, found {type(document).__name__}", path=path)
    return document


def _validate_document(document: dict[str, Any], *, file: Path) -> dict[str, Any]:
    """Check every key of one file; resolve its relative paths against the file's folder."""
    checked: dict[str, Any] = {}
    for name, value in document.items():
        if name in TOP_LEVEL:
            checked[name] = check_value(TOP_LEVEL[name], value, key=str(name), file=file, base=file.parent)
        elif name in SECTIONS:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"key '{name}': expected a section (a mapping), got {_show(value)}", path=file)
            checked[name] = {
                key: check_value(_section_key(name, key, file=file), item, key=f"{name}.{key}", file=file, base=file.parent)
                for key, item in value.items()
            }
        else:
            raise ConfigError(f"unknown key {_show_key(name)} (known: {', '.join([*TOP_LEVEL, *SECTIONS])})", path=file)
    return checked


def _section_key(section: str, key: Any, *, file: Path, flag: str = "") -> Key:
    keys = SECTIONS[section]
    if key not in keys:
        raise ConfigError(f"{flag}unknown key {_show_key(f'{section}.{key}')} (known in {section}: {', '.join(keys)})",
                          path=file)
    return keys[key]


def _merge(values: dict[str, dict[str, Any]], top: dict[str, Any], chain: list[dict[str, Any]]) -> None:
    for document in chain:
        for name, content in document.items():
            if name in SECTIONS:
                values[name].update(copy.deepcopy(content))
            else:
                top[name] = content


def _apply_override(values: dict[str, dict[str, Any]], top: dict[str, Any], item: str, *, source: Path) -> None:
    """Apply one ``section.key=value`` (the value parsed as a YAML scalar or list)."""
    flag = f"--set {item}: "
    dotted, equals, text = item.partition("=")
    parts = dotted.strip().split(".")
    if not equals or not all(parts):
        raise ConfigError(f"{flag}expected section.key=value", path=source)
    try:
        value = parse_yaml(text) if text.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"{flag}value is not a YAML scalar or list ({yaml_problem(error)})", path=source) from None
    if parts == ["name"]:
        top["name"] = check_value(TOP_LEVEL["name"], value, key="name", file=source, base=Path.cwd(), flag=flag)
        return
    if len(parts) != 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"{flag}unknown key '{dotted}' (sections: {', '.join(SECTIONS)})", path=source)
    section, key = parts
    spec = _section_key(section, key, file=source, flag=flag)
    values[section][key] = check_value(spec, value, key=dotted, file=source, base=Path.cwd(), flag=flag)


def check_value(spec: Key, value: Any, *, key: str, file: Path, base: Path, flag: str = "") -> Any:
    """``value`` if it fits ``spec`` (paths made absolute against ``base``), else a ConfigError."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{flag}key '{key}': expected {expected}, got {_show(value)}", path=file)

    if value is None:
        if spec.nullable:
            return None
        raise fail(_EXPECTED[spec.kind])
    if not _TYPE_CHECKS[spec.kind](value):
        raise fail(_EXPECTED[spec.kind])
    items = value if isinstance(value, list) else [value]
    if spec.choices and any(item not in spec.choices for item in items):
        raise fail("one of " + ", ".join(spec.choices))
    if spec.minimum is not None and any(isinstance(i, (int, float)) and i < spec.minimum for i in items):
        raise fail(f"a value >= {spec.minimum:g}")
    if spec.kind == "path" and value not in spec.names:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base / path).resolve()
    return list(value) if isinstance(value, list) else value


def _is_device(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    head, _, index = value.partition(":")
    return value in ("cpu", "cuda", "auto") or (head == "cuda" and index.isdigit())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPE_CHECKS = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _is_number,
    "str": lambda v: isinstance(v, str) and v != "",
    "path": lambda v: isinstance(v, str) and v != "",
    "device": _is_device,
    "str_list": lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(i, str) and i for i in v),
    "number_list": lambda v: isinstance(v, list) and len(v) > 0 and all(_is_number(i) for i in v),
    "target": lambda v: isinstance(v, str) and v != "",
    "batch_size": lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool)),
}
_EXPECTED = {
    "bool": "true or false",
    "int": "an integer",
    "number": "a number",
    "str": "a non-empty string",
    "path": "a path",
    "device": "cpu, cuda, cuda:N or auto",
    "str_list": "a non-empty list of strings",
    "number_list": "a non-empty list of numbers",
    "target": "'predicted' or a class name",
    "batch_size": "auto or a positive integer",
}


_SHORT = reprlib.Repr()  # bounded work whatever the value holds (nested or shared lists stay a few levels deep)
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 40, 40


def _show(value: Any) -> str:
    text = _SHORT.repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def _show_key(key: Any) -> str:
    """A key as named in a message: quoted, printable and short."""
    text = "".join(c if c.isprintable() else "?" for c in str(key))
    return f"'{text[:40]}...'" if len(text) > 40 else f"'{text}'"
