"""Report profiles and notebook parameters: what papermill injects into each notebook.

A profile file (trashlib/reporting/profiles/*.yaml, or any YAML path) has these top-level keys: `description`;
`defaults`, parameters for every notebook that declares them (data_root); `training`, the training
budget (TrainConfig fields) that every training notebook receives as its one `training` parameter and
turns into a config with `training_config` (02 trains it once as the trunk run); `branch`, the
TrainConfig fields a paired comparison's arms change when they continue from the trunk
(`branch_config`); `seeds`, the seeds of every compared arm; and `notebooks`, per notebook its
parameters, where a `training:` mapping overrides single budget keys. Every key must name a parameter of its
notebook's `parameters` cell and hold a value of its kind (`trashlib.reporting.notebook_cell`): a typo, a duplicated key
or a wrong type is an error naming the file and the key (with the closest valid name), found before any
notebook runs.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from pathlib import Path

import yaml

from trashlib import paths
from trashlib.config import TrainConfig
from trashlib.models import MODELS
from trashlib.predict.inference import TTA
from trashlib.reporting.notebook_cell import (declared_parameters, kind_problem, non_finite, notebook_parameter_names,
                                              show)

PROFILES_DIR = paths.PACKAGE_DIR / "reporting" / "profiles"
PROFILE_KEYS = ("description", "defaults", "training", "branch", "seeds", "notebooks")
NOT_BUDGET = ("model", "data_root")  # a notebook chooses its models; data_root comes from defaults or --data
NOT_BRANCH = NOT_BUDGET + ("init_from", "seed")  # a branch starts from the trunk with each of the seeds
FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
BUDGET_KEYS = FIELDS - set(NOT_BUDGET)


def _close(name, names) -> str:
    """' (did you mean X?)' when one of `names` is close to `name`, else ''."""
    match = difflib.get_close_matches(str(name), [str(n) for n in names], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                            key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                break
        return super().construct_mapping(node, deep)


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping, got {type(value).__name__}: {value!r}")
    return value


def _profile_path(profile: str | os.PathLike) -> Path:
    path = Path(profile)
    if not path.suffix:
        path = PROFILES_DIR / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"profile {profile!r} not found (known profiles: {', '.join(known)}, or a YAML path)")
    return path


def _read_profile(path: Path) -> dict:
    """The profile file's shape checked: known keys, mappings where mappings belong, a valid budget."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeys)
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}); a profile is a YAML file") from None
    if data is None:
        raise ValueError(f"{path} is empty: a profile is a YAML mapping of {', '.join(PROFILE_KEYS)}")
    data = _mapping(data, f"{path}: the profile")
    unknown = sorted(map(str, set(data) - set(PROFILE_KEYS)))
    if unknown:
        listed = ", ".join(f"{k!r}{_close(k, PROFILE_KEYS)}" for k in unknown)
        raise ValueError(f"{path}: unknown top-level keys {listed} (allowed: {', '.join(PROFILE_KEYS)})")
    if not isinstance(data.get("description") or "", str):
        raise ValueError(f"{path}: description must be text, got {show(data['description'])}")
    prof = {"path": path, "description": str(data.get("description") or ""),
            "defaults": _mapping(data.get("defaults"), f"{path}: defaults"),
            "training": _mapping(data.get("training"), f"{path}: training"),
            "notebooks": {}}
    for name, block in _mapping(data.get("notebooks"), f"{path}: notebooks").items():
        block = dict(_mapping(block, f"{path}: notebooks.{name}"))
        if "training" in block:
            block["training"] = _mapping(block["training"], f"{path}: notebooks.{name}.training")
        prof["notebooks"][str(name)] = block
    prof["branch"] = _mapping(data.get("branch"), f"{path}: branch")
    prof["seeds"] = _seeds(data.get("seeds", [0]), f"{path}: seeds")
    _check_budget(path, "training", prof["training"])
    fixed = sorted(set(prof["branch"]) & set(NOT_BRANCH))
    if fixed:
        raise ValueError(f"{path}: branch sets {fixed}; a branch takes its model and data from the trunk, "
                         "starts from it, and runs once per seed in `seeds`")
    _check_budget(path, "branch", _continued(prof["training"], prof["branch"]))
    for name, block in prof["notebooks"].items():
        if "training" in block:
            _check_budget(path, f"notebooks.{name}.training", {**prof["training"], **block["training"]})
    return prof


def _seeds(value, where: str) -> list[int]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
            or len(set(value)) != len(value)):
        raise ValueError(f"{where} must be a list of distinct non-negative integers, got {value!r}")
    return list(value)


def _field_problem(value, hint) -> str | None:
    """Why a YAML value cannot be a TrainConfig field of type `hint` (the kind only; TrainConfig checks ranges)."""
    args = typing.get_args(hint)
    if value is None:
        return None if type(None) in args else "must not be null"
    if typing.get_origin(hint) is tuple:
        if args[0] is str and isinstance(value, str):  # one name stands for a list of one (TrainConfig)
            return None
        if not isinstance(value, list) or any(_field_problem(v, args[0]) for v in value):
            return f"must be a list of {_PLURALS[args[0]]}, not {show(value)}"
        return None
    types = [t for t in (args or (hint,)) if t is not type(None)]
    if bool in types:
        return None if isinstance(value, bool) else f"must be true or false, not {show(value)}"
    if isinstance(value, bool) or not any(t is float and isinstance(value, int) or isinstance(value, t) for t in types):
        quote = " (YAML reads no, yes, off and on as false or true: quote the word)" if isinstance(value, bool) \
            and str in types else ""
        return f"must be {' or '.join(_KIND_NAMES[t] for t in types)}, not {show(value)}{quote}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    return None


_KIND_NAMES = {int: "an integer", float: "a number", str: "text"}
_PLURALS = {int: "integers", float: "finite numbers", str: "names"}


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_budget(path: Path, where: str, budget: dict) -> None:
    chosen = sorted(set(budget) & set(NOT_BUDGET))
    if chosen:
        raise ValueError(f"{path}: {where} sets {chosen}, which the notebooks choose themselves (not a budget key)")
    unknown = sorted(map(str, set(budget) - FIELDS))
    if unknown:
        listed = ", ".join(f"{k!r}{_close(k, FIELDS)}" for k in unknown)
        raise ValueError(f"{path}: {where}: unknown TrainConfig field(s) {listed}; "
                         f"valid fields: {', '.join(sorted(FIELDS))}")
    hints = typing.get_type_hints(TrainConfig)
    text = sorted(k for k, v in budget.items() if isinstance(v, str) and "str" not in str(hints[k]))
    if text:  # TrainConfig would fail comparing text with numbers
        hint = " (YAML reads 3e-4 as text: write 3.0e-4)" if any(_reads_as_number(budget[k]) for k in text) else ""
        raise ValueError(f"{path}: {where}: {text} must be numbers, not text{hint}")
    for key, value in budget.items():
        if (problem := _field_problem(value, hints[key])) is not None:
            raise ValueError(f"{path}: {where}.{key} {problem}")
    try:
        TrainConfig.from_dict(budget)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {where}: {e}") from None


def _smoke_training() -> dict:
    """The smoke profile's budget: what a training notebook runs with its defaults (nbval's run)."""
    return _read_profile(_profile_path("smoke"))["training"]


def load_profile(profile: str | os.PathLike) -> dict:
    """A profile (name or YAML path): {"path", "description", "defaults", "training", "notebooks": {name: {...}}}.

    Raises ValueError naming the file for malformed YAML, a non-mapping section, a budget key that is no
    TrainConfig field, a notebook name that matches no notebook, a key that is not a notebook parameter,
    or a value of another kind than the parameter's default (`trashlib.reporting.notebook_cell`).
    """
    prof = _read_profile(_profile_path(profile))
    declared = {p.stem: declared_parameters(p) for p in notebook_paths()}
    problems = []
    for name, block in prof["notebooks"].items():
        if name not in declared:
            problems.append(f"notebooks.{name} matches no notebook{_close(name, declared)} "
                            f"(notebooks: {', '.join(declared)})")
            continue
        for key, value in block.items():
            if key not in declared[name]:
                hint = "; budget keys go under training:" if "training" in declared[name] and key in BUDGET_KEYS else ""
                problems.append(f"notebooks.{name}.{key} is not a parameter of {name}{_close(key, declared[name])} "
                                f"(its parameters: {', '.join(declared[name])}{hint})")
            elif (problem := _value_problem(prof, f"notebooks.{name}.{key}", declared[name][key], value)) is not None:
                problems.append(problem)
    everywhere = {k: p for params in declared.values() for k, p in params.items()}
    for key, value in prof["defaults"].items():
        if key not in everywhere:
            problems.append(f"defaults.{key} is a parameter of no notebook{_close(key, everywhere)} "
                            f"(parameters: {', '.join(sorted(everywhere))})")
        elif (problem := _value_problem(prof, f"defaults.{key}", everywhere[key], value)) is not None:
            problems.append(problem)
    if problems:
        raise ValueError(f"{prof['path']}: " + "; ".join(problems))
    return prof


def _value_problem(prof: dict, where: str, param, value) -> str | None:
    """Why a profile's value (at `where`) cannot be given to a notebook parameter, else None.

    Its kind must be the default's, and no number in it NaN or infinite; `branch` and `seeds` are checked as
    the profile's own blocks are, each arm of `variants` as a branch, each model of 03's `scratch_models` as
    a budget, and `tta` must hold fields of trashlib.predict.inference.TTA.
    """
    if (bad := non_finite(value, where)) is not None:
        return f"{bad} is NaN or infinite; give a finite number"
    if (problem := kind_problem(param, value)) is not None:
        return f"{where} {problem}"
    if param.name == "data_root" and value is not None and not isinstance(value, str):
        return f"{where} must be a folder (text) or null, not {show(value)}"
    try:
        if param.name == "branch" and value is not None:
            _check_budget(prof["path"], where, _continued(prof["training"], _mapping(value, where)))
        elif param.name == "seeds":
            _seeds(value, where)
        elif param.name == "variants" and isinstance(value, dict):
            for arm, fields in value.items():
                _check_budget(prof["path"], f"{where}.{arm}", _continued(
                    prof["training"], {**prof["branch"], **_mapping(fields, f"{where}.{arm}")}))
        elif param.name == "scratch_models" and isinstance(value, dict):  # 03: each model's own budget
            for model, fields in value.items():
                if model not in MODELS:
                    return f"{where} names {model!r}, not a model{_close(str(model), MODELS)}; models: {', '.join(MODELS)}"
                _check_budget(prof["path"], f"{where}.{model}", {**prof["training"],
                                                                 **_mapping(fields, f"{where}.{model}")})
        elif param.name in ("grown", "cost_models") and isinstance(value, list):  # 03: names of models
            for model in value:
                if model not in MODELS:
                    return f"{where} names {model!r}, not a model{_close(str(model), MODELS)}; models: {', '.join(MODELS)}"
        elif param.name == "tta" and isinstance(value, dict):
            _check_tta(value, where)
    except ValueError as e:
        return str(e).removeprefix(f"{prof['path']}: ")
    return None


def _check_tta(value: dict, where: str) -> None:
    names = [f.name for f in dataclasses.fields(TTA)]
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ValueError(f"{where}.{unknown[0]} is not a TTA field{_close(unknown[0], names)} "
                         f"(fields: {', '.join(names)})")
    try:
        TTA(**value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} is not a valid TTA: {e}") from None


def training_config(training: dict | None = None, **varied) -> TrainConfig:
    """A training notebook's TrainConfig: the budget (None: the smoke profile's) with what it varies.

    `training` is the TrainConfig fields a profile gives (its `training:` block merged with the
    notebook's overrides); `varied` are the notebook's own choices (model, data_root). log_every
    defaults to about 25 loss lines per run, and `resume` to True: a notebook run again after an
    interruption continues its training runs instead of refusing to start them over.
    """
    if training is None:
        training = _smoke_training()
    config = {**_mapping(training, "training"), **varied}
    steps = config.get("steps", TrainConfig.steps)
    if isinstance(steps, int) and "log_every" not in config:  # a bad steps value is TrainConfig's to report
        config["log_every"] = max(1, steps // 25)
    config.setdefault("resume", True)
    return TrainConfig.from_dict(config)


def _continued(base: dict, changed: dict) -> dict:
    """`base` (a trunk's fields) with an arm's `changed` fields; where `changed` sets `copy_paste`, the copy & paste
    fields it does not set take their defaults: a copy & paste recipe is one unit, not the trunk's half-kept."""
    out = dict(base)
    if "copy_paste" in changed:
        out.update({f.name: list(f.default) if isinstance(f.default, tuple) else f.default
                    for f in dataclasses.fields(TrainConfig) if f.name.startswith("cp_") and f.name not in changed})
    out.update(changed)
    return out


def branch_config(trunk, branch: dict | None = None, *, seed: int = 0, **varied) -> TrainConfig:
    """The config of one arm of a paired comparison: the trunk run's config, continued from its last weights
    and AdamW moments.

    `trunk` is a finished Run; `branch` the profile's `branch:` fields (None: the smoke profile's), with
    a fresh warmup and schedule unless it sets them; `varied` what the arm changes (copy-paste settings,
    extra training sets). Where either sets `copy_paste`, the copy & paste fields it does not set take their
    defaults rather than the trunk's: a trunk that pastes rare classes gives an arm pasting uniformly no class list. Every arm, the "none" one included, runs the same steps for each seed, so a
    difference between arms comes from what they vary, not from the initialisation.
    """
    if branch is None:
        branch = _read_profile(_profile_path("smoke"))["branch"]
    config = {k: v for k, v in trunk.config.to_dict().items()
              if k not in ("run_name", "out_dir", "resume", "restart")}
    config = _continued(config, {"warmup_steps": None, **_mapping(branch, "branch"), **varied})
    config.update(init_from=trunk.name if trunk.path.parent.resolve() == Path(paths.RUNS_DIR).resolve()
                  else str(trunk.path), seed=seed, resume=True)
    if "log_every" not in branch and "log_every" not in varied:
        config["log_every"] = max(1, config["steps"] // 25)
    return TrainConfig.from_dict(config)


def retrained_config(trunk, **changed) -> TrainConfig:
    """The trunk run's recipe trained again from scratch with `changed` (04's trunk with and without pasting).

    Unlike `branch_config` it starts from random weights, for the trunk's steps and schedule; where `changed`
    sets `copy_paste`, the copy & paste fields it does not set take their defaults (one recipe, as in an arm).
    Changing nothing gives the trunk's own config, so `train` reuses the trunk's finished run.
    """
    config = {k: v for k, v in trunk.config.to_dict().items() if k not in ("run_name", "restart")}  # beside the trunk
    return TrainConfig.from_dict(_continued(config, changed))


def notebook_paths(selection: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in order, optionally filtered by names or number prefixes ("01", "02_baseline...")."""
    nbs = sorted(p for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return nbs
    chosen = [p for p in nbs if any(p.stem == s or p.stem.startswith(f"{s}_") or p.name == s for s in selection)]
    missing = [s for s in selection if not any(p.stem == s or p.stem.startswith(f"{s}_") or p.name == s for p in nbs)]
    if missing:
        hint = _close(missing[0], [p.stem for p in nbs])
        raise ValueError(f"no notebook matches {missing}{hint}; notebooks: {', '.join(p.stem for p in nbs)}")
    return chosen


def notebook_parameters(profile: dict, notebook: str, *, data_root: str | None = None) -> dict:
    """Parameters papermill injects into one notebook, each only where its parameters cell declares it:
    profile defaults, then the notebook's own; `training` is the profile's budget with the notebook's overrides."""
    declared = notebook_parameter_names(paths.NOTEBOOKS_DIR / f"{notebook}.ipynb")
    block = profile["notebooks"].get(notebook, {})
    params = {**profile["defaults"], **block}
    if "training" in declared:
        params["training"] = {**(profile["training"] or _smoke_training()), **block.get("training", {})}
    if "branch" in declared and "branch" not in block:
        params["branch"] = profile.get("branch") or {}
    if "seeds" in declared and "seeds" not in block:
        params["seeds"] = profile.get("seeds") or [0]
    if data_root is not None:  # absolute: the kernel runs in the notebooks' folder, not the caller's
        params["data_root"] = str(Path(data_root).expanduser().resolve())
    return {k: v for k, v in params.items() if k in declared}
