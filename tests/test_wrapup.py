"""The wrap-up page: built from fixture metrics, it holds the waterfall, the tables and the findings."""
from __future__ import annotations

import json
import re

import pytest

from trashlib import paths
from trashlib.classes import CLASS_NAMES
from trashlib.config import TrainConfig
from trashlib.reporting import runner, store
from trashlib.reporting.records import record_class
from trashlib.reporting.waterfall import collect_steps

IOU = {c: 0.5 for c in CLASS_NAMES}


def _variant(values, runs):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return {"val_mIoU_mean": mean, "val_mIoU_std": std, "val_mIoU": values, "seeds": list(range(len(values))),
            "per_class_iou": IOU, "run_names": runs}


METRICS = {
    "01_EDA": {"data_root": "trash-synth", "split": "train_all", "n_images_in_split": 400},
    "02_baseline_mask2former": {"val_mIoU_mean": 0.30, "val_mIoU_std": 0.005, "seeds": [0, 1, 2],
                                "per_class_iou": IOU, "colour_floor_mIoU": 0.15, "trunk_run": "trunk",
                                "run_names": ["trunk_branch", "trunk_branch_s1", "trunk_branch_s2"]},
    # what 03 saves: a variant record per model (reference first) and its comparison table
    "03_backbones_dinat_semask": {"runs": ["mask2former-swin-tiny_x", "semask-swin-tiny_x"],
                                  "models": {"mask2former-swin": _variant([0.30, 0.29, 0.31], ["mask2former-swin-tiny_x"]),
                                             "semask-swin": _variant([0.33, 0.32, 0.34], ["semask-swin-tiny_x"])},
                                  "table": [{"variant": "mask2former-swin", "val mIoU": 0.30},
                                            {"variant": "semask-swin", "val mIoU": 0.33}]},
    "04_copy_paste": {"reference": "none", "variants": {
        "none": _variant([0.30, 0.31, 0.305], ["a", "b", "c"]),
        "offline": _variant([0.25, 0.26, 0.255], ["d", "e", "f"]),
        "classmix": _variant([0.29, 0.30, 0.295], ["j", "k", "l"]),
        "online rare": _variant([0.301, 0.309, 0.306], ["g", "h", "i"])},
        "fields": {"none": {}, "offline": {"copy_paste": "offline", "cp_donors": "uniform"},
                   "classmix": {"copy_paste": "online", "cp_donors": "classmix"},
                   "online rare": {"copy_paste": "online", "cp_donors": "classes", "cp_classes": ["Metal"]}}},
    "05_crf_ensemble": {"stages": [
        {"name": "best single", "val_mIoU": 0.33, "per_class_iou": IOU, "recipe": {"members": ["a"]}},
        {"name": "soft ensemble", "val_mIoU": 0.35, "per_class_iou": IOU, "recipe": {"members": ["a", "b"], "vote": "soft"}},
        {"name": "+ CRF", "val_mIoU": 0.335, "per_class_iou": IOU, "built_on": "soft ensemble",
         "recipe": {"members": ["a", "b"], "vote": "soft", "crf": {"iters": 5}}},
        {"name": "+ overwrite", "val_mIoU": 0.352, "per_class_iou": IOU,
         "recipe": {"members": ["a", "b"], "vote": "soft", "crf": {"iters": 5}, "overwrite": 2}}]},
    # 06 not run
    "07_submission": {"source": "best-on-val", "stage": "+ overwrite", "run": None, "val_mIoU": 0.352,
                      "recipe": {"members": ["trunk_branch", "semask-swin-tiny_x"]}, "test_mIoU": 0.29,
                      "val_mIoU_from": "05's val set", "valid": True},
}


def records(metrics: dict) -> dict:
    """Each notebook's record made from a fixture's dict (unknown keys and wrong kinds refused)."""
    return {nb: record_class(nb).from_dict(m) for nb, m in metrics.items()}


@pytest.fixture
def reports(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "REPORTS_DIR", tmp_path / "reports")
    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path / "runs")
    for record in records(METRICS).values():
        store.save_metrics(record)
    run = tmp_path / "runs" / "trunk_branch"
    run.mkdir(parents=True)
    TrainConfig(model="mask2former-swin", seed=0).to_yaml(run / "config.yaml")
    (run / "environment.json").write_text(json.dumps({"git": {"commit": "abcdef1234567"}, "device": "cpu",
                                                      "platform": "Linux-x86_64"}))
    (tmp_path / "reports" / "02_baseline_mask2former.html").write_text("x")
    return tmp_path / "reports"


@pytest.mark.integration
def test_the_index_holds_the_waterfall_and_the_tables(reports):
    records = [{"notebook": "02_baseline_mask2former", "title": "Baseline", "status": "ok", "error": None,
                "seconds": 120, "parameters": {}}]
    page = runner.write_index(records, profile="cpu").read_text()
    assert (reports / "figures" / "wrapup_waterfall.png").stat().st_size > 1000
    assert 'src="figures/wrapup_waterfall.png"' in page and 'src="figures/wrapup_per_class.png"' in page
    for heading in ("Summary", "The waterfall", "The winning team's experiments, regenerated",
                    "What worked, what did not", "Notebooks", "Figures"):
        assert heading in page, heading
    assert page.count("<table") >= 4                              # summary, waterfall, winners' table, notebooks
    waterfall = page[page.index('id="waterfall"'):page.index('id="winners-table"')]
    assert "0.300 ± 0.005" in waterfall and "semask-swin" in waterfall and "+0.030" in waterfall
    assert re.search(r"copy-paste.*?online rare.*?tie", waterfall, re.S)   # best variant: within noise
    assert "+ CRF" in waterfall and '<span class="loss">loss</span>' in waterfall   # -0.015: beyond 2 x 02's spread
    assert "pseudo labels (06)" in waterfall and "not run" in waterfall
    assert 'href="02_baseline_mask2former.html#' in waterfall                     # link to the notebook section
    assert "commit abcdef12" in waterfall and "seed 0" in waterfall and "(folder missing)" in waterfall
    winners = page[page.index('id="winners-table"'):page.index('id="findings"')]
    assert "Different dataset and scale" in winners and "0.7895" in winners and "0.787" in winners
    assert "none -&gt; offline" in winners and "-0.050" in winners   # the winning team's 0.77 -> 0.72, re-tested
    assert "none -&gt; online rare" in winners
    findings = page[page.index('id="findings"'):page.index('id="notebooks"')]
    assert "What did not" in findings and "copy-paste" in findings
    assert "test mIoU" in page and "0.290" in page and "2.0 min" in page and "submitted: + overwrite" in page


def test_stages_tolerate_missing_metrics_and_records_without_what_a_step_needs():
    stages = collect_steps(records({"02_baseline_mask2former": {"val_mIoU_mean": 0.2, "run_names": ["r"]},
                                    "04_copy_paste": {"variants": {"none": _variant([0.3, 0.31], ["a", "b"])}}}))
    by = {s.name: s for s in stages}
    assert by["baseline"].value == 0.2 and by["baseline"].verdict == "level"
    assert by["copy-paste"].verdict == "unreadable" and "04_copy_paste.json" in by["copy-paste"].note
    assert "at least one other variant" in by["copy-paste"].note
    assert by["pseudo labels"].verdict == "not run" and by["submission"].verdict == "not run"


@pytest.mark.integration
def test_an_unreadable_metrics_file_is_named_on_the_page(reports):
    (reports / "metrics" / "06_pseudo_label.json").write_text("{not json")
    page = runner.write_index([], profile="smoke").read_text()
    assert "06_pseudo_label.json: invalid JSON" in page


def test_ensemble_stages_step_from_what_they_build_on():
    m5 = {"stages": [{"name": "best single", "val_mIoU": 0.30}, {"name": "soft", "val_mIoU": 0.32},
                     {"name": "hard", "val_mIoU": 0.31, "built_on": "best single", "verdict": "gain"}]}
    stages = {s.name: s for s in collect_steps(records({"05_crf_ensemble": m5}))}
    assert stages["soft"].reference == "best single" and stages["soft"].verdict == "one seed"  # no noise known
    assert stages["hard"].reference == "best single" and stages["hard"].delta == pytest.approx(0.01)
    assert stages["hard"].verdict == "gain" and "from 05" in stages["hard"].note
    m5["stages"][2].update(delta=0.01, delta_ci=[-0.004, 0.024], mde=0.02, noise="seeds + images", verdict="tie")
    hard = {s.name: s for s in collect_steps(records({"05_crf_ensemble": m5}))}["hard"]
    assert hard.verdict == "tie" and hard.note == "95% interval [-0.004, +0.024], MDE 0.020 (noise: seeds + images)"


@pytest.mark.integration
def test_a_trunk_that_pasted_is_named_beside_04s_steps(reports):
    store.save_metrics(records({"04_copy_paste": {**METRICS["04_copy_paste"], "trunk_copy_paste": "cp-online-metal"}})
                       ["04_copy_paste"])
    page = runner.write_index([], profile="cpu").read_text()
    winners = page[page.index('id="winners-table"'):page.index('id="notebooks"')]
    assert "none -&gt; offline (from a trunk trained with cp-online-metal)" in winners
    assert "none -&gt; online rare (from a trunk trained with cp-online-metal)" in winners


def test_a_variant_step_takes_its_notebooks_own_interval():
    rare = _variant([0.301, 0.309, 0.306], ["g", "h", "i"])
    m4 = {"reference": "none", "variants": {"none": _variant([0.30, 0.31, 0.305], ["a", "b", "c"]), "online rare": rare}}
    from_spread = next(s for s in collect_steps(records({"04_copy_paste": m4})) if s.notebook == "04_copy_paste")
    assert from_spread.verdict == "tie" and "interval" not in from_spread.note  # the seed spreads alone
    # 04 recorded its paired contrast (seeds paired, the val images resampled): that verdict and interval stand
    rare.update(delta=0.0003, delta_ci=[0.0001, 0.0005], mde=0.0002, noise="seeds + images", verdict="gain")
    paired = next(s for s in collect_steps(records({"04_copy_paste": m4})) if s.notebook == "04_copy_paste")
    assert paired.verdict == "gain" and "[+0.000, +0.001], MDE 0.000 (noise: seeds + images)" in paired.note


def test_the_seeds_delta_is_read_from_its_published_table():
    from trashlib.reporting.published import winners_delta

    assert winners_delta("copy-paste, offline") == pytest.approx(-0.05)
    assert winners_delta("pseudo labels (hard, every test pixel)", "Swin-L") == pytest.approx(0.75 - 0.7718)
    with pytest.raises(KeyError, match="known: .*DenseCRF on the ensemble"):
        winners_delta("best single model")  # no before: not a step


def test_the_best_backbone_takes_03s_own_interval():
    grown = _variant([0.301, 0.309, 0.306], ["g", "h", "i"])
    m3 = {"models": {"none": _variant([0.30, 0.31, 0.305], ["a", "b", "c"]), "semask-swin": grown}}
    stage = next(s for s in collect_steps(records({"03_backbones_dinat_semask": m3})) if s.notebook == "03_backbones_dinat_semask")
    assert stage.what == "semask-swin" and stage.reference == "none" and "interval" not in stage.note
    grown["val_mIoU_mean"] = 0.2  # below the reference: still the step 03 measured, reported as it is
    stage = next(s for s in collect_steps(records({"03_backbones_dinat_semask": m3})) if s.notebook == "03_backbones_dinat_semask")
    assert stage.what == "semask-swin" and stage.delta < 0
    grown["val_mIoU_mean"] = 0.306
    grown.update(delta=0.0003, delta_ci=[-0.004, 0.005], mde=0.006, noise="seeds + images", verdict="tie")
    stage = next(s for s in collect_steps(records({"03_backbones_dinat_semask": m3})) if s.notebook == "03_backbones_dinat_semask")
    assert stage.verdict == "tie" and stage.note == "95% interval [-0.004, +0.005], MDE 0.006 (noise: seeds + images)"


def test_the_seed_table_reads_each_notebooks_own_interval_and_words_the_claims_by_the_rule():
    from trashlib.reporting.published import winners_claims, winners_table

    offline = _variant([0.25, 0.26, 0.255], ["d", "e", "f"])
    m4 = {"reference": "none", "variants": {"none": _variant([0.30, 0.31, 0.305], ["a", "b", "c"]), "offline": offline},
          "fields": {"none": {}, "offline": {"copy_paste": "offline"}}}
    row = lambda t: t[t["experiment"] == "copy-paste, offline"].iloc[0]  # noqa: E731
    spread_only = row(winners_table(records({"04_copy_paste": m4})))
    assert spread_only["verdict"] == "loss" and spread_only["CI high"] < 0 and spread_only["MDE"] > 0
    offline.update(delta=-0.05, delta_ci=[-0.09, -0.01], mde=0.03, noise="seeds + images", verdict="loss")
    table = winners_table(records({"04_copy_paste": m4}))
    assert (row(table)["CI low"], row(table)["CI high"], row(table)["MDE"]) == (-0.09, -0.01, 0.03)
    claim = next(c for c in winners_claims(table) if c.startswith("copy-paste, offline"))
    assert "the winning team claimed -0.0500; measured -0.0500 [-0.0900, -0.0100], the claim inside it; " \
           "a loss in the claimed direction" in claim
    m5 = {"stages": [{"name": "best single", "val_mIoU": 0.30},
                     {"name": "+ CRF", "val_mIoU": 0.31, "recipe": {"members": ["a"], "crf": {"iters": 5}}}],
          "against_first": {"+ CRF": {"delta": 0.01, "delta_ci": [-0.002, 0.022], "mde": 0.017, "verdict": "tie"}}}
    crf = winners_table(records({"05_crf_ensemble": m5}))
    crf = crf[crf["experiment"] == "DenseCRF on the ensemble"].iloc[0]
    assert crf["verdict"] == "tie" and crf["MDE"] == 0.017 and crf["CI low"] == -0.002
    assert any("below this design's MDE 0.0170, so the tie cannot tell" in c for c in winners_claims(winners_table(
        records({"05_crf_ensemble": m5}))))


def test_the_seeds_model_table_is_read_by_trashlibs_model_names():
    from trashlib.reporting.published import winners_cost, winners_score

    assert winners_score("semask-swin") - winners_score("mask2former-swin") == pytest.approx(0.783 - 0.7718)
    assert winners_score("segformer") is None  # the winning team gives no number
    assert winners_score("semask-fapn") == 0.7724 and winners_score("maskdino") == 0.74
    assert winners_cost("mask2former-dinat") == (510, 220) and winners_cost("semask-fapn") == (None, None)


def test_the_seed_table_finds_an_arm_by_its_recorded_recipe_not_by_its_name():
    from trashlib.reporting.published import winners_table

    named = {"none": _variant([0.30, 0.31, 0.305], ["a", "b", "c"]),
             "A": _variant([0.25, 0.26, 0.255], ["d", "e", "f"]),
             "offline-ish": _variant([0.31, 0.32, 0.315], ["g", "h", "i"])}
    m4 = {"reference": "none", "variants": named,
          "fields": {"none": {}, "A": {"copy_paste": "offline"}, "offline-ish": {"copy_paste": "online"}}}
    m6 = {"reference": "none", "variants": {"none": named["none"], "B": named["A"], "C": named["offline-ish"]},
          "pseudo_sets": {"B": {"folder": "b", "recipe": {"kind": "per_class", "keep": 0.5}, "round": 1},
                          "C": {"folder": "c", "recipe": {"kind": "hard"}, "round": 2}}}
    table = winners_table(records({"04_copy_paste": m4, "06_pseudo_label": m6})).set_index("experiment")
    assert table.loc["copy-paste, offline", "this run"] == "none -> A"          # its fields say offline
    assert table.loc["copy-paste, online, class-targeted", "this run"] == "not run"  # no arm pastes by class
    assert table.loc["pseudo labels (hard, every test pixel)"].iloc[0]["this run"] == "not run"  # C is round 2
    ours = table.loc["pseudo labels (this project's variants)"]
    assert list(ours["this run"]) == ["none -> B", "none -> C"]  # per-class, then round 2
