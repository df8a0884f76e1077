"""Report profiles: one training budget, typos refused with the file and the valid names, clear YAML errors."""
from __future__ import annotations

import contextlib
import io
import json
import textwrap
from types import SimpleNamespace

import pytest

from trashlib import paths
from trashlib.config import TrainConfig
from trashlib.reporting import parameters, runner, store
from trashlib.reporting.findings import as_markdown, markdown_bullets

BASELINE, BACKBONES = "02_baseline_mask2former", "03_backbones_dinat_semask"


def _profile(tmp_path, text: str):
    path = tmp_path / "mine.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("text, names", [
    ("notebooks:\n  01_EDA:\n    max_imges: 3\n", ["notebooks.01_EDA.max_imges", "max_images", "gallery_size"]),
    ("notebooks:\n  01_EDAA:\n    max_images: 3\n", ["01_EDAA", "matches no notebook", "01_EDA", BASELINE]),
    ("notebooks:\n  01_EDA:\n    training: {steps: 3}\n", ["notebooks.01_EDA.training", "max_images"]),
    ("defaults:\n  data_rot: null\n", ["defaults.data_rot", "data_root"]),
    (f"notebooks:\n  {BASELINE}:\n    steps: 3\n", [f"notebooks.{BASELINE}.steps", "budget keys go under training:"]),
    # the training budget holds only valid TrainConfig fields, and so do the branch and seeds blocks
    ("training:\n  stepz: 3\n", ["stepz", "steps", "batch_size"]),
    ("training:\n  lr: 3e-4\n", ["['lr'] must be numbers", "3.0e-4"]),   # YAML 1.1 reads 3e-4 as text
    ("training:\n  model: segformer\n", ["model"]),
    (f"training: {{steps: 3}}\nnotebooks:\n  {BASELINE}:\n    training: {{batch_sise: 1}}\n",
     [f"notebooks.{BASELINE}.training", "batch_sise", "batch_size"]),
    ("branch:\n  seed: 3\n", ["branch sets ['seed']", "once per seed in `seeds`"]),   # arms take seeds from `seeds`
    ("branch:\n  stepz: 3\n", ["branch", "stepz"]),
    ("seeds: [0, 0]\n", ["seeds must be a list of distinct non-negative integers"]),
    # 03's from-scratch models: each a model name with a budget of its own
    (f"notebooks:\n  {BACKBONES}:\n    scratch_models: {{segformr: {{steps: 3}}}}\n",
     [f"notebooks.{BACKBONES}.scratch_models names 'segformr'", "segformer"]),
    (f"notebooks:\n  {BACKBONES}:\n    scratch_models: {{segformer: {{stepz: 3}}}}\n",
     [f"notebooks.{BACKBONES}.scratch_models.segformer", "stepz"]),
])
def test_a_key_that_is_no_parameter_or_config_field_is_an_error_naming_the_file(tmp_path, text, names):
    path = _profile(tmp_path, text)
    with pytest.raises(ValueError) as err:
        parameters.load_profile(path)
    for name in [str(path), *names]:
        assert name in str(err.value)


@pytest.mark.parametrize("text, match", [
    ("notebooks: [unclosed\n", "invalid YAML"),
    ("- a\n- b\n", "the profile must be a mapping"),
    ("defaults: [1, 2]\n", "defaults must be a mapping"),
    ("training: 12\n", "training must be a mapping"),
    ("notebooks:\n  01_EDA: [1]\n", "notebooks.01_EDA must be a mapping"),
    (f"notebooks:\n  {BASELINE}:\n    training: [steps]\n", f"notebooks.{BASELINE}.training must be a mapping"),
    ("trainig: {steps: 3}\n", "unknown top-level keys"),
])
def test_malformed_profiles_are_value_errors_naming_the_file(tmp_path, text, match):
    path = _profile(tmp_path, text)
    with pytest.raises(ValueError, match=match) as err:
        parameters.load_profile(path)
    assert str(path) in str(err.value)


def test_a_notebook_overrides_single_training_keys(tmp_path):
    prof = parameters.load_profile(_profile(tmp_path, f"""
        training: {{steps: 40, batch_size: 2, image_size: 64}}
        notebooks:
          {BASELINE}:
            training: {{steps: 7}}
            val_max_images: 3
        """))
    params = parameters.notebook_parameters(prof, BASELINE)
    assert params["training"] == {"steps": 7, "batch_size": 2, "image_size": 64}
    assert params["val_max_images"] == 3
    assert parameters.notebook_parameters(prof, BACKBONES)["training"] == {"steps": 40, "batch_size": 2, "image_size": 64}


def test_training_is_injected_only_where_declared():
    prof = parameters.load_profile("cpu")
    assert "training" not in parameters.notebook_parameters(prof, "01_EDA")
    assert "training" not in parameters.notebook_parameters(prof, "07_submission")
    assert parameters.notebook_parameters(prof, BASELINE)["training"] == prof["training"]


def test_a_profile_without_a_budget_gives_the_smoke_budget(tmp_path):
    prof = parameters.load_profile(_profile(tmp_path, "description: no training block\n"))
    assert parameters.notebook_parameters(prof, BASELINE)["training"] == parameters.load_profile("smoke")["training"]


def test_training_config_defaults_to_the_smoke_budget():
    cfg = parameters.training_config(None, model="segformer")
    smoke = parameters.load_profile("smoke")["training"]
    assert cfg == parameters.training_config(smoke, model="segformer")
    assert (cfg.model, cfg.steps, cfg.batch_size, cfg.image_size, cfg.eval_every) == ("segformer", 12, 2, 64, None)
    assert cfg.log_every == 1


def test_training_config_merges_and_validates():
    cfg = parameters.training_config({"steps": 200, "lr": 1e-3}, model="segformer", data_root="/x")
    assert (cfg.steps, cfg.lr, cfg.data_root, cfg.log_every) == (200, 1e-3, "/x", 8)   # log_every = steps // 25
    assert parameters.training_config({"steps": 200, "log_every": 3}).log_every == 3
    with pytest.raises(ValueError, match="stepz"):
        parameters.training_config({"stepz": 3})
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        parameters.training_config({"steps": 0})


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_shipped_profiles_give_every_training_notebook_a_valid_config(profile):
    prof = parameters.load_profile(profile)
    for nb in parameters.notebook_paths():
        params = parameters.notebook_parameters(prof, nb.stem)
        if "training" in parameters.notebook_parameter_names(nb):
            assert isinstance(parameters.training_config(params["training"], model="segformer"), TrainConfig)


def test_parameter_names_come_from_the_tagged_cell(tmp_path):
    def cell(source, tags=()):
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source, "outputs": [],
                "execution_count": None}

    nb = {"cells": [cell("x = 1"), cell("a = 1  # note\nb: int = 2\nc = d = None\nprint(a)", ["parameters"])],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "n.ipynb").write_text(json.dumps(nb))
    assert parameters.notebook_parameter_names(tmp_path / "n.ipynb") == ["a", "b", "c", "d"]


def test_cpu_profile_trunk_pastes_rare_classes_and_each_arm_pastes_only_what_its_name_says(tmp_path):
    prof = parameters.load_profile("cpu")
    trunk_cfg = parameters.training_config(prof["training"], model="mask2former-swin", data_root="/x")
    assert (trunk_cfg.copy_paste, trunk_cfg.cp_donors) == ("online", "classes")
    trunk = SimpleNamespace(config=trunk_cfg, name="trunk", path=tmp_path / "trunk")
    variants = parameters.notebook_parameters(prof, "04_copy_paste")["variants"]
    tags = {name: parameters.branch_config(trunk, prof["branch"], seed=0, **fields).copy_paste_tag
            for name, fields in {"none": {}, **variants}.items()}
    assert tags == {"none": "", "online uniform": "_cp-online-uniform", "online rare": trunk_cfg.copy_paste_tag,
                    "offline": "_cp-offline-uniform", "classmix": "_classmix"}
    # an arm that sets copy_paste takes the recipe's defaults for what it does not set, not the trunk's class list
    uniform = parameters.branch_config(trunk, {"steps": 2}, seed=0, copy_paste="online", cp_donors="uniform")
    assert (uniform.cp_classes, uniform.cp_prob) == ((), 0.5)
    # one that only tunes the trunk's pasting keeps the rest of it
    tuned = parameters.branch_config(trunk, {"steps": 2}, seed=0, cp_prob=0.9)
    assert (tuned.copy_paste, tuned.cp_classes, tuned.cp_prob) == ("online", trunk_cfg.cp_classes, 0.9)


def test_retrained_config_is_the_trunk_recipe_from_scratch_with_or_without_its_pasting(tmp_path):
    from trashlib.runs.folder import run_name

    prof = parameters.load_profile("cpu")
    trunk_cfg = parameters.training_config(prof["training"], model="mask2former-swin", data_root="/x")
    trunk = SimpleNamespace(config=trunk_cfg, name=run_name(trunk_cfg), path=tmp_path / "trunk")
    rare = parameters.notebook_parameters(prof, "04_copy_paste")["variants"]["online rare"]
    # the trunk's own pasting: the trunk's config, so train() reuses the trunk's run
    again = parameters.retrained_config(trunk, **rare)
    assert again.to_dict() == trunk_cfg.to_dict() and run_name(again) == trunk.name
    bare = parameters.retrained_config(trunk, copy_paste="none")
    assert (bare.copy_paste, bare.cp_classes, bare.copy_paste_tag) == ("none", (), "")
    assert run_name(bare) != trunk.name
    # from scratch, for the trunk's steps and schedule (not an arm's)
    assert (bare.init_from, bare.steps, bare.lr, bare.eval_every, bare.seed) == (
        None, trunk_cfg.steps, trunk_cfg.lr, trunk_cfg.eval_every, trunk_cfg.seed)
    assert {k: v for k, v in bare.to_dict().items() if not k.startswith(("cp_", "copy_paste"))} == {
        k: v for k, v in trunk_cfg.to_dict().items() if not k.startswith(("cp_", "copy_paste"))}


def test_save_figure_writes_the_png_and_returns_nothing_for_a_cell_to_print(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(paths, "REPORTS_DIR", tmp_path)
    fig, ax = plt.subplots(figsize=(1, 1))
    assert store.save_figure(fig, "02_curve") is None  # a cell ending with it shows no PosixPath(...)
    plt.close(fig)
    assert store.figure_path("02_curve").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.rglob("*")] == ["figures", "02_curve.png"]


@pytest.mark.parametrize("key", ["grown", "cost_models"])
def test_03s_lists_of_models_must_name_models(tmp_path, key):
    path = _profile(tmp_path, f"notebooks:\n  {BACKBONES}:\n    {key}: [semask-swim]\n")
    with pytest.raises(ValueError, match=f"notebooks.{BACKBONES}.{key} names 'semask-swim'.*semask-swin"):
        parameters.load_profile(path)


def test_a_rendered_page_gets_one_button_that_folds_the_code():
    page = runner.with_code_toggle('<html><head></head><body class="jp-Notebook">\n<div>x</div></body></html>')
    assert page.count('id="trashlib-code-toggle"') == 1 and page.index("<button") > page.index("<body")
    assert runner.with_code_toggle("no body") == "no body"


def test_findings_print_as_markdown_bullets():
    assert markdown_bullets("- a\nplain line\n    by class: x\n\n") == "- a\n- plain line\n  by class: x"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), as_markdown():  # outside IPython: the lines as they were printed
        print("- one")
    assert out.getvalue() == "- one\n"
