"""Report profiles and notebook parameters: what papermill injects into each notebook.

A profile file (trashlib/profiles/*.yaml, or any YAML path) has these top-level keys: `description`;
`defaults`, parameters for every notebook that declares them (data_root); `training`, the training
budget (TrainConfig fields) that every training notebook receives as its one `training` parameter and
turns into a config with `training_config` (02 trains it once as the trunk run); `branch`, the
TrainConfig fields a paired comparison's arms change when they continue from the trunk
(`branch_config`); `seeds`, the seeds of every compared arm; and `notebooks`, per notebook its
parameters, where a `training:` mapping overrides single budget keys. Every key must name a parameter of its notebook's
`parameters` cell: a typo is an error naming the file, not a warning.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import os
import typing
from pathlib import Path

import yaml

from trashlib import paths
from trashlib.config import TrainConfig

PROFILES_DIR = paths.PACKAGE_DIR / "profiles"
PROFILE_KEYS = ("description", "defaults", "training", "branch", "seeds", "notebooks")
NOT_BUDGET = ("model", "data_root")  # a notebook chooses its models; data_root comes from defaults or --data
NOT_BRANCH = NOT_BUDGET + ("init_from", "seed")  # a branch starts from the trunk with each of the seeds
BUDGET_KEYS = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - set(NOT_BUDGET)


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
    """The profile file's shape checked: four known keys, mappings where mappings belong, a valid budget."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from None
    data = _mapping(data, f"{path}: the profile")
    unknown = set(data) - set(PROFILE_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(map(str, unknown))} "
                         f"(allowed: {', '.join(PROFILE_KEYS)})")
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
    _check_budget(path, "branch", {**prof["training"], **prof["branch"]})
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


def _check_budget(path: Path, where: str, budget: dict) -> None:
    chosen = sorted(set(budget) & set(NOT_BUDGET))
    if chosen:
        raise ValueError(f"{path}: {where} sets {chosen}, which the notebooks choose themselves (not a budget key)")
    hints = typing.get_type_hints(TrainConfig)
    text = sorted(k for k, v in budget.items() if isinstance(v, str) and k in hints and "str" not in str(hints[k]))
    if text:  # TrainConfig would fail comparing text with numbers
        raise ValueError(f"{path}: {where}: {text} must be numbers, not text (YAML reads 3e-4 as text: write 3.0e-4)")
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
    TrainConfig field, a notebook name that matches no notebook, or a key that is not a notebook parameter.
    """
    prof = _read_profile(_profile_path(profile))
    declared = {p.stem: notebook_parameter_names(p) for p in notebook_paths()}
    problems = []
    for name, block in prof["notebooks"].items():
        if name not in declared:
            problems.append(f"notebooks.{name} matches no notebook (notebooks: {', '.join(declared)})")
            continue
        for key in block:
            if key not in declared[name]:
                hint = "; budget keys go under training:" if "training" in declared[name] and key in BUDGET_KEYS else ""
                problems.append(f"notebooks.{name}.{key} is not a parameter of {name} "
                                f"(its parameters: {', '.join(declared[name])}{hint})")
    everywhere = sorted({k for params in declared.values() for k in params})
    problems += [f"defaults.{key} is a parameter of no notebook (parameters: {', '.join(everywhere)})"
                 for key in prof["defaults"] if key not in everywhere]
    if problems:
        raise ValueError(f"{prof['path']}: " + "; ".join(problems))
    return prof


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


def branch_config(trunk, branch: dict | None = None, *, seed: int = 0, **varied) -> TrainConfig:
    """The config of one arm of a paired comparison: the trunk run's config, continued from its last weights
    and AdamW moments.

    `trunk` is a finished Run; `branch` the profile's `branch:` fields (None: the smoke profile's), with
    a fresh warmup and schedule unless it sets them; `varied` what the arm changes (copy-paste settings,
    extra training sets). Every arm, the "none" one included, runs the same steps for each seed, so a
    difference between arms comes from what they vary, not from the initialisation.
    """
    if branch is None:
        branch = _read_profile(_profile_path("smoke"))["branch"]
    config = {k: v for k, v in trunk.config.to_dict().items()
              if k not in ("run_name", "out_dir", "resume", "restart")}
    config.update({"warmup_steps": None, **_mapping(branch, "branch"), **varied})
    config.update(init_from=trunk.name if trunk.path.parent.resolve() == Path(paths.RUNS_DIR).resolve()
                  else str(trunk.path), seed=seed, resume=True)
    if "log_every" not in branch and "log_every" not in varied:
        config["log_every"] = max(1, config["steps"] // 25)
    return TrainConfig.from_dict(config)


def notebook_parameter_names(nb_path: str | os.PathLike) -> list[str]:
    """The names assigned in a notebook's `parameters`-tagged cell (what papermill may override)."""
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    names = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            try:
                body = ast.parse("".join(cell.get("source", ""))).body
            except SyntaxError as e:
                raise ValueError(f"{nb_path}: the parameters cell is not plain Python: {e}") from None
            for node in body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def notebook_paths(selection: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in order, optionally filtered by names or number prefixes ("01", "02_baseline...")."""
    nbs = sorted(p for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return nbs
    chosen = [p for p in nbs if any(p.stem == s or p.stem.startswith(f"{s}_") or p.name == s for s in selection)]
    missing = [s for s in selection if not any(p.stem == s or p.stem.startswith(f"{s}_") or p.name == s for p in nbs)]
    if missing:
        raise ValueError(f"no notebook matches {missing}; notebooks: {', '.join(p.stem for p in nbs)}")
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
