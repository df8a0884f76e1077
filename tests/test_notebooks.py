"""Notebooks are committed without outputs, carry one `parameters` cell, and render through the report."""
from __future__ import annotations

import dataclasses
import json

import pytest

from trashlib import paths
from trashlib.config import TrainConfig
from trashlib.reporting import parameters, runner

NOTEBOOKS = sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no numbered notebooks in {paths.NOTEBOOKS_DIR}"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(nb_path):
    nb = json.loads(nb_path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{nb_path.name}: cells {dirty} have outputs or execution counts; strip them before committing"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_first_code_cell(nb_path):
    nb = json.loads(nb_path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb_path.name}: expected exactly one cell tagged 'parameters', found {len(tagged)}"
    assert code[0] is tagged[0], f"{nb_path.name}: the parameters cell must be the first code cell"
    assert nb["cells"][0]["cell_type"] == "markdown" and "".join(nb["cells"][0]["source"]).startswith("# ")


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_profiles_name_only_parameters_the_notebooks_have(profile):
    prof = parameters.load_profile(profile)  # raises on a key that is no parameter of its notebook
    for nb_path in NOTEBOOKS:
        declared = parameters.notebook_parameter_names(nb_path)
        assert set(parameters.notebook_parameters(prof, nb_path.stem)) <= set(declared)


def test_the_smoke_profile_is_the_notebooks_own_defaults():
    """nbval runs the notebooks with their defaults, `report --profile smoke` with the profile: the same run,
    but for 01's viewer, which a headless report leaves out."""
    from trashlib.reporting.notebook_cell import declared_parameters

    prof = parameters.load_profile("smoke")
    for nb_path in NOTEBOOKS:
        defaults = {name: p.default for name, p in declared_parameters(nb_path).items()}
        given = {k: v for k, v in (prof["notebooks"] or {}).get(nb_path.stem, {}).items() if k != "training"}
        assert given == ({"interactive": False} if nb_path.stem == "01_EDA" else {}), nb_path.stem
        assert all(defaults[k] != v for k, v in given.items()), f"{nb_path.stem} repeats a default"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_training_notebook_takes_its_budget_as_one_parameter(nb_path):
    """The budget lives in the profiles' `training:` blocks; a notebook declares only what it varies."""
    declared = parameters.notebook_parameter_names(nb_path)
    if "training" not in declared:
        return
    budget = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "data_root"}
    assert not budget & set(declared), f"{nb_path.name} declares budget fields {sorted(budget & set(declared))}"
    source = "".join(next(c for c in json.loads(nb_path.read_text())["cells"] if c["cell_type"] == "code")["source"])
    assert "training = None" in source, "the default budget must be the smoke profile's (training = None)"


def test_unknown_profile_lists_known():
    with pytest.raises(FileNotFoundError, match="smoke"):
        parameters.load_profile("nope")


def test_notebook_selection():
    assert [p.stem for p in parameters.notebook_paths(["01"])] == ["01_EDA"]
    with pytest.raises(ValueError, match="01_EDA"):
        parameters.notebook_paths(["99"])


@pytest.mark.integration
def test_report_renders_eda_smoke(tmp_path, monkeypatch, tiny_root):
    """The report machinery end to end: papermill run, HTML with figures, metrics, index page. On the real
    TACO photos where they are present (one notebook kernel serves both checks), else on the tiny dataset."""
    from trashlib.paths import SHARED_TACO_DIR

    real = (SHARED_TACO_DIR / "train_all.json").exists()
    monkeypatch.setattr(paths, "REPORTS_DIR", tmp_path / "reports")
    monkeypatch.setenv("TRASHLIB_REPORTS", str(tmp_path / "reports"))
    records = runner.make_report("smoke", ["01"], data_root=str(SHARED_TACO_DIR if real else tiny_root))
    assert records[0]["status"] == "ok", records
    html = (tmp_path / "reports" / "01_EDA.html").read_text()
    assert "data:image/png;base64" in html and 'id="trashlib-code-toggle"' in html  # the code folds away
    assert json.loads((tmp_path / "reports" / "metrics" / "01_EDA.json").read_text())
    executed = (tmp_path / "reports" / "01_EDA.ipynb").read_text()
    assert "widget-view" not in executed and "EDA: " not in executed  # 01's progress bar is off in a report
    assert '"text/markdown"' in executed  # the findings are formatted text, not a monospace print
    index = (tmp_path / "reports" / "index.html").read_text()
    assert 'href="01_EDA.html"' in index and "failed" not in index


def test_relative_data_root_is_made_absolute_for_the_kernel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = parameters.notebook_parameters(parameters.load_profile("smoke"), "01_EDA", data_root="some/data")
    assert params["data_root"] == str(tmp_path / "some" / "data")


def test_index_keeps_notebooks_not_rerun(tmp_path):
    (tmp_path / "01_EDA.html").write_text("x")
    (tmp_path / "metrics").mkdir()
    old = {"notebook": "01_EDA", "title": "EDA", "status": "ok", "error": None, "seconds": 3, "parameters": {}}
    stale = {**old, "notebook": "09_gone"}  # its HTML is gone: dropped
    (tmp_path / "metrics" / "_runs.json").write_text(json.dumps([old, stale]))
    new = {**old, "notebook": "07_submission", "title": "Submission"}
    merged = runner._merge_records(tmp_path, [new])
    assert [r["notebook"] for r in merged] == ["01_EDA", "07_submission"]


@pytest.mark.parametrize("nb", [p for p in NOTEBOOKS if not p.stem.startswith("01")], ids=lambda p: p.stem)
def test_each_result_notebook_tags_the_one_section_the_wrap_up_links_to(nb):
    from trashlib.reporting.wrapup import KEY_TAG, section_anchor

    tagged = [c for c in json.loads(nb.read_text())["cells"] if KEY_TAG in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0]["cell_type"] == "markdown"
    heading = next(line for line in "".join(tagged[0]["source"]).splitlines() if line.startswith("## "))
    assert section_anchor(nb.stem) == "#" + heading[3:].replace(" ", "-").replace('"', "%22")
