"""Notebook parameters, checked before any work.

Every notebook's cell tagged ``parameters`` holds literals only (papermill injects overrides after
it). :func:`check` holds each value to the type of its default in that cell (an int where the
default is an int, a list of strings where it is one, a mapping with the default's keys) and to
the ranges that names imply (``SEED`` >= 0, ``THREADS`` >= 1, every ``*EPOCHS*`` > 0, ...), and
raises one :class:`ParameterError` naming the parameter. The parameters every notebook takes, the
dataset and the baseline's recipe, are declared once here in :data:`COURSE`.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import data, env, workloads

#: Taken by every notebook, with these defaults: what hw1 trains and every later homework compresses.
COURSE: dict[str, Any] = {
    "RESNET_DATASET": data.OFFLINE_DEFAULT["resnet18"],   # a name of common.data.DATASETS or an ImageFolder path
    "YOLO_DATASET": data.OFFLINE_DEFAULT["yolov8n"],      # a name of common.data.DATASETS or a data.yaml path
    "YOLO_WEIGHTS": "scratch",                       # "scratch" | "yolov8n.pt" (pretrained, downloads)
    "RESNET_EPOCHS": workloads.RECIPES["resnet18"]["epochs"],
    "YOLO_EPOCHS": workloads.RECIPES["yolov8n"]["epochs"],
    "DEVICE": "auto",        # where training, fine-tunes and evaluation run: "auto" | "cpu" | "cuda"
}


#: the note every row of a detection set without a test split starts with (it is scored on val)
SCORED_ON_VAL = "scored on val: the dataset has no test split"


class ParameterError(ValueError):
    """A notebook parameter of the wrong type or out of range; the message names it."""


def defaults(notebook: str | Path) -> dict[str, Any]:
    """The literal defaults of ``notebook``'s ``parameters`` cell, in order."""
    import papermill as pm

    out = {}
    for name, spec in pm.inspect_notebook(str(notebook)).items():
        try:
            out[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            raise ParameterError(f"{Path(notebook).name}: parameter {name} = {spec['default']} is not a "
                                 "literal; the parameters cell holds literals only") from None
    return out


_NOUNS = {bool: "bool", int: "int", float: "number", str: "string", list: "list", dict: "mapping"}


def _kind(v: Any, article: bool = True) -> str:
    noun = _NOUNS.get(type(v), type(v).__name__)
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}" if article else noun


def _fits(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _check_type(name: str, value: Any, default: Any) -> None:
    where = f"parameter {name}"
    if not _fits(value, default):
        raise ParameterError(f"{where} must be {_kind(default)} like its default {default!r}, got {value!r}")
    if isinstance(default, list) and default:
        kinds = {type(d) for d in default}
        proto = default[0] if len(kinds) == 1 else 0.0    # a mixed int / float list takes numbers
        for v in value:
            if not _fits(v, proto):
                raise ParameterError(f"{where} must be a list of {_kind(proto, False)}s like {default!r}, "
                                     f"got the element {v!r}")
    if isinstance(default, dict):
        unknown = sorted(set(value) - set(default))
        if unknown:
            raise ParameterError(f"{where} has unknown keys {unknown}; valid keys: {sorted(default)}")
        for k, v in value.items():
            _check_type(f"{name}[{k!r}]", v, default[k])


def _numbers(value: Any) -> list:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def _check_range(name: str, value: Any) -> None:
    nums = _numbers(value)
    if name in ("SEED", "SEEDS", "WARMUP"):
        bad, rule = [v for v in nums if v < 0], ">= 0"
    elif name in ("THREADS", "REPEATS", "BATCH", "CALIBRATION") or name.endswith(("_IMAGES", "_WORKERS")):
        bad, rule = [v for v in nums if v < 1], ">= 1"
    elif "EPOCHS" in name or name == "LR" or name.endswith("_LR"):
        bad, rule = [v for v in nums if v <= 0], "> 0"
    else:
        return
    if bad:
        raise ParameterError(f"parameter {name} must be {rule}, got {value!r}")


def check(values: Mapping[str, Any], notebook: str | Path) -> dict[str, Any]:
    """Check every parameter of ``notebook`` as found in ``values`` (a notebook passes
    ``globals()``) against its default, and ``WORKLOADS`` against the known workloads; returns
    them. The datasets are resolved by :func:`course`."""
    got = {}
    for name, default in defaults(notebook).items():
        if name not in values:
            raise ParameterError(f"parameter {name} is not defined; run the parameters cell first")
        _check_type(name, values[name], default)
        _check_range(name, values[name])
        got[name] = values[name]
    if "WORKLOADS" in got:
        unknown = [w for w in got["WORKLOADS"] if w not in data.WORKLOADS]
        if unknown or not got["WORKLOADS"]:
            raise ParameterError(f"parameter WORKLOADS: unknown workloads {unknown or '(none given)'}; "
                                 f"valid: {list(data.WORKLOADS)}")
    return got


@dataclass(frozen=True)
class Course:
    """The datasets (resolved and checked) and baseline recipes every homework works on."""

    datasets: dict[str, str]
    train: dict[str, dict[str, Any]]
    device: str = "cpu"      # DEVICE resolved: "cpu" or "cuda" (CPU latency is always timed on the CPU)

    def baseline(self, workload: str, seed: int):
        """The baseline hw1 trains for ``workload`` with these parameters (trained here if missing)."""
        return workloads.baseline(workload, self.datasets[workload], seed=seed, **self.train[workload])


def is_default(values: Mapping[str, Any]) -> bool:
    """Whether ``values`` hold :data:`COURSE`'s defaults (the run the committed outputs come from)
    and the run is at course scale (not :mod:`common.profiles`' check profile)."""
    from common import profiles

    return profiles.active() == "course" and all(values.get(k, d) == d for k, d in COURSE.items())


def course(values: Mapping[str, Any]) -> Course:
    """:data:`COURSE`'s parameters from ``values`` (defaults where absent), each dataset resolved
    (names checked, paths and layouts validated, network sets refused offline) and ``DEVICE``
    resolved (:func:`common.env.set_device`; "cuda" without a GPU is refused) before any work.
    A detection set without a test split is scored on val; every row written for it says so
    (:func:`common.registry.note_dataset`)."""
    v = {k: values.get(k, d) for k, d in COURSE.items()}
    for k, d in COURSE.items():
        _check_type(k, v[k], d)
        _check_range(k, v[k])
    if v["DEVICE"] not in env.DEVICES:
        raise ParameterError(f"parameter DEVICE must be one of {list(env.DEVICES)}, got {v['DEVICE']!r}")
    try:
        device = env.device(v["DEVICE"])
    except (RuntimeError, ValueError) as e:
        raise ParameterError(f"parameter DEVICE: {e}") from None
    if v["YOLO_WEIGHTS"] not in workloads.YOLO_WEIGHTS:
        raise ParameterError(f"parameter YOLO_WEIGHTS must be one of {list(workloads.YOLO_WEIGHTS)}, "
                             f"got {v['YOLO_WEIGHTS']!r}")
    datasets = {"resnet18": data.resolve("resnet18", v["RESNET_DATASET"]),
                "yolov8n": data.resolve("yolov8n", v["YOLO_DATASET"])}
    det = datasets["yolov8n"]      # "shapes" is generated with a test split; an export may have none
    if det != "shapes" and data.detection_split(data.detection_yaml(det)) != "test":
        from common import registry

        registry.note_dataset("yolov8n", data.dataset_label(datasets["yolov8n"]), SCORED_ON_VAL)
    env.set_device(device)    # every training, fine-tune and evaluation of a module runs there
    return Course(
        device=device,
        datasets=datasets,
        train={"resnet18": {"epochs": v["RESNET_EPOCHS"]},
               "yolov8n": {"epochs": v["YOLO_EPOCHS"], "weights": v["YOLO_WEIGHTS"]}})
