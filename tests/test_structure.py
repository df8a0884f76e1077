"""The package's shape: no import cycles, imports at the top, one home for the training recipe."""
from __future__ import annotations

import ast
import dataclasses
import pathlib

import pytest

from conftest import cli_help
from trashlib.config import TrainConfig

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "trashlib"
# Imported inside functions on purpose: heavy (seconds) or optional (notebook extras, GPU kernels).
LAZY_OK = {"transformers", "natten", "papermill", "nbconvert", "jupyter_client", "ipywidgets", "IPython"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text(encoding="utf-8"))


def _imports(name: str, path: pathlib.Path, tree: ast.AST):
    """(imported module, inside a function?) for every import statement of a module."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(n) for f in functions for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from trashlib import paths` imports the module trashlib.paths
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            yield target, id(node) in inside


PARSED = list(_modules())  # (name, path, tree) of every module, parsed once for every test here
MODULES = {name for name, _, _ in PARSED}
GRAPH = {name: {t for t, _ in _imports(name, path, tree) if t.startswith("trashlib")} for name, path, tree in PARSED}


def _room(module: str) -> str:
    """`trashlib.training.loop` -> `training`: a subpackage counts as one room."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The cycles found by depth-first search (one per back edge)."""
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_between_modules():
    edges = {m: {t for t in targets if t in MODULES and t != m} for m, targets in GRAPH.items()}
    # a package's __init__ re-exporting its own modules is not a cycle of the design
    edges = {m: {t for t in ts if not (m.startswith(t + ".") and t in MODULES)} for m, ts in edges.items()}
    assert _cycles(edges) == []


def test_no_import_cycle_between_rooms():
    edges: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        src = _room(module)
        for target in targets:
            if target in MODULES or target.rsplit(".", 1)[0] in MODULES:
                dst = _room(target if target in MODULES else target.rsplit(".", 1)[0])
                if src != dst and "__init__" not in (src, dst) and "__main__" not in (src, dst):
                    edges.setdefault(src, set()).add(dst)
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_function_local_imports_only_for_heavy_optional_packages():
    local = sorted(f"{path.relative_to(PACKAGE.parent)}: {target}" for name, path, tree in PARSED
                   for target, inside in _imports(name, path, tree)
                   if inside and target.split(".")[0] not in LAZY_OK)
    assert local == []


def test_only_plots_draws():
    """Pictures have one home: no module outside trashlib.plots imports matplotlib or seaborn."""
    drawing = sorted(name for name, targets in _external_imports().items()
                     if not name.startswith("trashlib.plots") and targets & {"matplotlib", "seaborn"})
    assert drawing == []


def test_only_the_report_and_the_cli_run_the_report():
    callers = sorted(m for m, targets in GRAPH.items() if "trashlib.reporting.runner" in targets)
    assert callers and all(m.startswith("trashlib.reporting") or m == "trashlib.cli" for m in callers), callers


def _external_imports() -> dict[str, set[str]]:
    """The top-level packages outside trashlib that each module imports."""
    return {name: {t.split(".")[0] for t, _ in _imports(name, path, tree) if not t.startswith("trashlib")}
            for name, path, tree in PARSED}


def test_paths_only_computes_paths():
    assert GRAPH["trashlib.paths"] == set()


def test_train_help_lists_every_config_field_with_its_help():
    out = cli_help("train", columns=400)
    for field in dataclasses.fields(TrainConfig):
        help_text = field.metadata["help"]
        assert help_text.split(" (")[0] in " ".join(out.split()), field.name


def test_every_config_field_has_help_and_identity():
    for field in dataclasses.fields(TrainConfig):
        assert field.metadata.get("help"), field.name
        assert isinstance(field.metadata.get("identity"), bool), field.name


@pytest.mark.parametrize("argv, expected", [
    (["--lr", "3e-4", "--scale-range", "0.5", "1", "--warmup-steps", "none", "--resume"],
     {"lr": 3e-4, "scale_range": (0.5, 1.0), "warmup_steps": None, "resume": True}),
    (["--extra-train", "a", "b", "--mixed-precision", "bf16", "--data", "/x"],
     {"extra_train": ("a", "b"), "mixed_precision": "bf16", "data_root": "/x"}),
])
def test_config_from_command_line(argv, expected):
    import argparse

    from trashlib.config import add_config_arguments, config_from_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    cfg = config_from_arguments(parser.parse_args(argv))
    assert {k: getattr(cfg, k) for k in expected} == expected
    assert cfg.steps == TrainConfig().steps  # what was not typed keeps its default


@pytest.mark.parametrize("bad", [{"lr": float("nan")}, {"lr": float("inf")}, {"cdb_tau": float("nan")},
                                 {"scale_range": (0.5, float("nan"))}, {"grad_clip": float("-inf")},
                                 {"lr": "3e-4"}, {"weight_decay": None}])
def test_non_finite_numbers_are_refused(bad):
    with pytest.raises(ValueError, match="finite"):
        TrainConfig(**bad)


def test_a_shown_path_does_not_say_where_the_machine_keeps_the_project(monkeypatch, tmp_path):
    from trashlib import paths

    monkeypatch.setattr(paths, "PROJECT_DIR", tmp_path / "project")
    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path / "elsewhere" / "runs")
    monkeypatch.setattr(paths, "REPORTS_DIR", tmp_path / "project" / "reports")
    assert paths.shown(tmp_path / "project" / "data" / "raw" / "x") == "data/raw/x"
    assert paths.shown(tmp_path / "elsewhere" / "runs" / "r1") == "runs/r1"
    assert paths.shown(tmp_path / "project" / "reports" / "metrics" / "a.json") == "reports/metrics/a.json"
    assert paths.shown(tmp_path / "project") == "."
    assert paths.shown(pathlib.Path.home() / "photos") == "~/photos"
