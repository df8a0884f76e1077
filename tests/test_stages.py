"""Stages of notebook 05: the reported runs, recipes rebuilt on a split, the stage table, the stage 07 submits."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from conftest import confident, write_index

from trashlib import paths
from trashlib.classes import CLASS_NAMES, NUM_CLASSES
from trashlib.config import TrainConfig
from trashlib.data import TrashDataset
from trashlib.metrics import Scores
from trashlib.postprocess import stages
from trashlib.postprocess.consensus import overwrite_index
from trashlib.postprocess.crf import PRESETS, CRFParams, crf_index
from trashlib.postprocess.ensemble import ensemble
from trashlib.postprocess.recipe import StageRecipe, apply_recipe, pick_stage
from trashlib.postprocess.stages import (Stage, choose_members, class_deltas, crf_changes, lessons, rank_runs,
                                         spread_group, stage_records, stage_table, sweep_grid)
from trashlib.predict.inference import TTA
from trashlib.reporting import store
from trashlib.reporting.records import BackbonesRecord, BaselineRecord, CopyPasteRecord, StagesRecord
from trashlib.scoring.compare import ArmResults
from trashlib.scoring.evaluation import Evaluation

BASELINE, BACKBONES, COPY_PASTE = stages.REPORTING_NOTEBOOKS


@pytest.fixture(autouse=True)
def _stores(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "PROBS_DIR", tmp_path / "probs")
    monkeypatch.setattr(paths, "REPORTS_DIR", tmp_path / "reports")
    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path / "runs")


def fake_run(name: str, data_root, *, miou: float | None = 0.5, finished: bool = True):
    """A run folder with a config, one eval line and (optionally) the finished mark: no training."""
    folder = paths.RUNS_DIR / name
    folder.mkdir(parents=True)
    TrainConfig(model="segformer", steps=1, batch_size=1, image_size=64, data_root=str(data_root)).to_yaml(
        folder / "config.yaml")
    if miou is not None:
        (folder / "metrics.jsonl").write_text(json.dumps({"kind": "eval", "step": 1, "mIoU": miou}) + "\n")
    if finished:
        (folder / "finished.json").write_text("{}")
    return folder


def scores(miou: float, per_class=None) -> Scores:
    per_class = np.full(NUM_CLASSES, miou) if per_class is None else np.asarray(per_class, float)
    return Scores(miou, per_class, 0.0, 0.0, 0.0)


# -- the reported runs ------------------------------------------------------------------------------
def test_reported_run_groups_reads_every_notebooks_keys_and_skips_missing_ones():
    store.save_metrics(BaselineRecord(run_names=["base_s1", "base_s2"], trunk_run="trunk"))
    store.save_metrics(BackbonesRecord(runs=["trunk", "mask2former-dinat-tiny_b8x10_data-128"]))
    store.save_metrics(CopyPasteRecord(variants={"none": {"run_names": ["base_s1", "base_s2"]},
                                                 "online": {"run_names": ["cp_s1", "cp_s2", "cp_s3"]}}))
    assert store.reported_run_groups([BASELINE, BACKBONES, COPY_PASTE, "05_crf_ensemble"]) == {
        "02 seeds": ["base_s1", "base_s2"], "02 trunk": ["trunk"],
        "03 mask2former-dinat-tiny": ["mask2former-dinat-tiny_b8x10_data-128"],  # the trunk is not repeated
        "04 online": ["cp_s1", "cp_s2", "cp_s3"]}                                # "none" repeats 02's seeds
    # 04 also saves every run in a flat `runs` list: its arms must still be grouped by variant, and
    # 03's per-model records by model, so that the seeds of one arm measure the noise
    store.save_metrics(CopyPasteRecord(runs=["base_s1", "cp_s1", "cp_s2", "cp_s3", "mix_s1", "mix_s2"],
                                       variants={"online": {"run_names": ["cp_s1", "cp_s2", "cp_s3"]},
                                                 "classmix": {"run_names": ["mix_s1", "mix_s2"]}}))
    store.save_metrics(BackbonesRecord(runs=["seg_s0", "seg_s1"],
                                       models={"segformer": {"run_names": ["seg_s0", "seg_s1"]}}))
    assert store.reported_run_groups([BASELINE, BACKBONES, COPY_PASTE]) == {
        "02 seeds": ["base_s1", "base_s2"], "02 trunk": ["trunk"], "03 segformer": ["seg_s0", "seg_s1"],
        "04 online": ["cp_s1", "cp_s2", "cp_s3"], "04 classmix": ["mix_s1", "mix_s2"]}
    with pytest.raises(ValueError, match="no metrics record for notebook '04_not_run_yet'"):
        store.reported_run_groups(["04_not_run_yet"])


@pytest.mark.parametrize("metrics, key", [({"run_names": "a b".split() + [3]}, "run_names"),
                                          ({"runs": {"a": 1}}, "runs"),
                                          ({"variants": ["a"]}, "variants"),
                                          ({"variants": {"online": {"runs": ["a"]}}}, "variants.online")])
def test_a_malformed_metrics_entry_names_the_file_and_key(metrics, key):
    path = paths.REPORTS_DIR / "metrics" / f"{COPY_PASTE}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": COPY_PASTE, "version": CopyPasteRecord.VERSION, **metrics}))
    with pytest.raises(ValueError, match=key) as err:
        store.reported_run_groups([COPY_PASTE])
    assert "04_copy_paste.json" in str(err.value)


def test_collect_runs_keeps_finished_runs_on_this_data_root_and_falls_back_to_every_run(tiny_root, tmp_path):
    for name in ["base_s1", "base_s2", "trunk"]:
        fake_run(name, tiny_root)
    fake_run("unfinished", tiny_root, finished=False)
    fake_run("elsewhere", tmp_path / "other-data")
    # nothing reported: every finished run on the data root, seeds grouped by name
    fallback = stages.collect_runs(tiny_root)
    assert {k: [r.name for r in v] for k, v in fallback.items()} == {"base": ["base_s1", "base_s2"],
                                                                     "trunk": ["trunk"]}
    store.save_metrics(BaselineRecord(run_names=["base_s1", "base_s2", "gone_s3"], trunk_run="trunk"))
    with pytest.warns(UserWarning, match="gone_s3"):
        found = stages.collect_runs(tiny_root)
    assert {k: [r.name for r in v] for k, v in found.items()} == {"02 seeds": ["base_s1", "base_s2"],
                                                                  "02 trunk": ["trunk"]}
    assert spread_group(found, "trunk") == found["02 seeds"]  # no seeds of its own: 02's measure the noise
    assert spread_group(found, "base_s2") == found["02 seeds"]
    with pytest.raises(ValueError, match="none of the groups"):
        spread_group(found, "elsewhere")


def test_rank_runs_orders_by_recorded_miou_with_never_evaluated_last(tiny_root):
    runs = {name: fake_run(name, tiny_root, miou=m) for name, m in [("a", 0.2), ("b", None), ("c", 0.4)]}
    groups = stages.collect_runs(tiny_root)
    table = rank_runs(groups)
    assert table["run"].tolist() == ["c", "a", "b"] and np.isnan(table["recorded val mIoU"].iloc[-1])
    assert set(runs) == set(table["run"]) and rank_runs({}).empty
    assert table["model"].tolist() == ["segformer"] * 3


def test_members_take_one_architecture_each_first_and_only_runs_above_the_floor():
    ranked = pd.DataFrame({"run": ["s1", "s2", "m1", "d1", "s3", "x"], "group": list("aabcad"),
                           "model": ["swin", "swin", "semask", "dinat", "swin", "swin"],
                           "recorded val mIoU": [0.31, 0.30, 0.29, 0.08, 0.28, np.nan]})
    assert choose_members(ranked, 3, floor=0.14) == ["s1", "m1", "s2"]        # DiNAT is below the floor
    assert choose_members(ranked, 3) == ["s1", "m1", "d1"]                    # no floor given: every architecture
    assert choose_members(ranked, 3, floor=0.14, diverse=False) == ["s1", "s2", "m1"]
    assert choose_members(ranked, 9, floor=0.14) == ["s1", "m1", "s2", "s3"]  # never the unevaluated run
    assert choose_members(ranked, 2, floor=0.5) == ["s1", "m1"]               # none above: the floor is not applied
    with pytest.raises(ValueError, match="at least one member"):
        choose_members(ranked, 0)


# -- recipes -----------------------------------------------------------------------------------------
def test_recipe_round_trips_and_refuses_bad_values():
    r = StageRecipe(("a", "b", "c"), tta=TTA(hflip=True), vote="soft", weights=(0.5, 0.25, 0.25),
               crf=PRESETS["peers-a"], overwrite=3, max_area=1024)
    assert StageRecipe.from_dict(json.loads(json.dumps(r.as_dict()))) == r
    assert r.describe() == "3 runs, soft vote (0.50/0.25/0.25) + CRF g3-3_b10-50-5_i40 + overwrite k=3, area <= 1024"
    assert StageRecipe("a").members == ("a",) and StageRecipe("a").describe() == "a"
    for bad, match in [(dict(members=()), "distinct run names"), (dict(members=("a", "a"), vote="soft"), "distinct"),
                       (dict(members=("a", "b")), "need a vote"), (dict(members=("a", "b"), vote="mean"), "valid: soft"),
                       (dict(members=("a", "b"), vote="hard", weights=(1, 1)), "soft vote only"),
                       (dict(members=("a", "b"), vote="soft", weights=(1, float("nan"))), "finite"),
                       (dict(members=("a", "b"), vote="soft", weights=(1,)), "1 weights for 2"),
                       (dict(members=("a", "b"), vote="soft", overwrite=2), "needs crf"),
                       (dict(members=("a", "b"), vote="soft", crf=CRFParams(), overwrite=3), "1 <= k <= 2"),
                       (dict(members=("a",), crf=CRFParams(), overwrite=1, max_area=0), "positive"),
                       (dict(members=("a",), max_area=10), "needs overwrite"),
                       (dict(members=("a",), crf={"srgb": float("inf")}), "srgb")]:
        with pytest.raises(ValueError, match=match):
            StageRecipe(**bad)
    with pytest.raises(ValueError, match=r"05\.json: unknown keys \['vots'\]"):
        StageRecipe.from_dict({"members": ["a"], "vots": "soft"}, where="05.json")
    with pytest.raises(ValueError, match="05.json: .*need a vote"):
        StageRecipe.from_dict({"members": ["a", "b"]}, where="05.json")


@pytest.fixture
def members(tiny_root, monkeypatch):
    """Three hand-made members' val predictions, served by name in place of trained runs."""
    val = TrashDataset(tiny_root, "val")
    masks = [val.load_mask(i) for i in range(len(val))]
    rng = np.random.default_rng(0)
    indices = {}
    for m in range(3):
        maps = {}
        for name, mask in zip(val.file_names, masks):
            noisy = np.where(rng.random(mask.shape) < 0.1, rng.integers(0, NUM_CLASSES, mask.shape), mask)
            maps[name] = confident(noisy, p=0.5 + 0.1 * m)
        indices[f"run{m}"] = write_index(paths.PROBS_DIR / f"run{m}" / "val", maps, split="val",
                                         data_root=str(tiny_root))
    monkeypatch.setattr("trashlib.postprocess.recipe.resolve_run", lambda name: name)
    monkeypatch.setattr("trashlib.postprocess.recipe.predict", lambda name, *a, **k: indices[name])
    return indices


def test_apply_recipe_is_the_chain_of_vote_crf_and_overwrite(tiny_root, members):
    recipe = StageRecipe(tuple(members), vote="soft", weights=(0.5, 0.3, 0.2), crf=CRFParams(iters=2), overwrite=2)
    out = apply_recipe(recipe, tiny_root, "val", workers=1)
    inputs = list(members.values())
    voted = ensemble(inputs, weights=(0.5, 0.3, 0.2), progress=False)
    expected = overwrite_index(crf_index(voted, tiny_root, "val", CRFParams(iters=2), workers=1, progress=False),
                               inputs, k=2, progress=False)
    assert out.path == expected.path and len(out) == len(inputs[0])
    assert apply_recipe(StageRecipe(("run1",)), tiny_root, "val").path == members["run1"].path  # a single run: its maps
    stage = stages.evaluate_stage(recipe.replace(crf=None, overwrite=None), tiny_root, "val")
    assert stage.index.path == voted.path and 0 < stage.scores.miou <= 1


# -- the stage table --------------------------------------------------------------------------------
def test_stage_table_judges_each_stage_against_the_one_it_builds_on():
    s = {"best single": scores(0.50), "soft vote": scores(0.56), "hard vote": scores(0.55), "+ CRF": scores(0.40)}
    built_on = {"soft vote": "best single", "hard vote": "soft vote", "+ CRF": "soft vote"}
    noise = ArmResults([scores(0.49), scores(0.50), scores(0.51)], seeds=[1, 2, 3])  # spread 0.01
    table = stage_table(s, built_on, noise=noise)
    assert table["built on"].tolist() == ["-", "best single", "soft vote", "soft vote"]
    np.testing.assert_allclose(table["Δ"].iloc[1:], [0.06, -0.01, -0.16], atol=1e-12)
    np.testing.assert_allclose(table["Δ vs best single"], [0, 0.06, 0.05, -0.10], atol=1e-12)
    assert table["verdict"].tolist() == ["reference", "gain", "tie", "loss"]  # |Δ| < 2 x 0.01: a tie
    assert stage_table(s, built_on)["verdict"].tolist()[1:] == ["one seed"] * 3
    assert table["noise"].tolist()[1:] == ["seeds"] * 3  # bare scores: no per-image record to bootstrap
    assert table["small-object recall"].isna().all()  # bare scores: no objects counted
    hits = np.zeros((2, 2, NUM_CLASSES), np.int64)
    hits[:, 1, 4], hits[0, 0, 4] = 2, 1  # 1 of 4 Metal objects found
    counted = {"a": Stage(StageRecipe(("a",)), None, Evaluation(None, scores(0.5), None, objects=hits)),
               "b": scores(0.6)}
    assert stage_table(counted, {"b": "a"}, noise=noise)["small-object recall"].tolist()[0] == 0.25
    with pytest.raises(ValueError, match="not a stage"):
        stage_table(s, {"soft vote": "weighted"}, noise=noise)
    with pytest.raises(ValueError, match="non-finite"):
        stage_table({"a": scores(float("nan"))}, {}, noise=noise)
    text = "\n".join(lessons(s, table, noise=noise))
    mde = table.loc["hard vote", "MDE"]
    assert f"hard vote: val mIoU 0.5500, -0.0100 {table.loc['hard vote', '95% CI']} against soft vote - a tie: " \
           f"its 95% interval holds 0, so no effect larger than {mde:.4f} (the MDE)" in text
    assert "+ CRF: val mIoU 0.4000, -0.1600 [" in text and "against soft vote - a loss" in text
    assert "Best on val: soft vote (0.5600, +0.0600 [" in text and "against best single, a gain)" in text
    assert "no change can be called" in lessons(s, stage_table(s, built_on), noise=None)[0]


def test_stages_scored_image_by_image_get_both_sources_of_noise_and_per_class_intervals():
    from trashlib.scoring.evaluation import evaluate_label_maps

    rng = np.random.default_rng(0)
    masks = [rng.integers(0, 5, size=(16, 16)) for _ in range(12)]

    def stage(flip: float) -> Stage:  # each pixel's label replaced by a random one with probability `flip`
        preds = [np.where(rng.random(m.shape) < flip, rng.integers(0, 5, size=m.shape), m) for m in masks]
        evaluation = evaluate_label_maps((f"{i}.jpg", p, m) for i, (p, m) in enumerate(zip(preds, masks)))
        assert evaluation.confusions.shape == (12, NUM_CLASSES, NUM_CLASSES)
        assert (evaluation.confusions.sum(0) == evaluation.confusion).all()
        return Stage(StageRecipe(("a",)), type("Index", (), {"path": "p"})(), evaluation)

    built = {"best single": stage(0.6), "+ CRF": stage(0.3)}
    noise = ArmResults([scores(0.30), scores(0.31), scores(0.29)], seeds=[1, 2, 3])
    table = stage_table(built, {"+ CRF": "best single"}, noise=noise, classes=["Metal", "Battery"])
    row = table.loc["+ CRF"]
    assert row["noise"] == "seeds + images" and row["verdict"] == "gain" and row["MDE"] > 0
    assert row["Δ"] == pytest.approx(built["+ CRF"].scores.miou - built["best single"].scores.miou)
    assert row["Δ Metal"] > 0 and row["Δ Metal 95% CI"].startswith("[") and np.isnan(row["Δ Battery"])
    seeds_only = stage_table({k: v.scores for k, v in built.items()}, {"+ CRF": "best single"}, noise=noise)
    assert seeds_only.loc["+ CRF", "MDE"] < row["MDE"]  # the images add their noise
    record = stage_records(built, table, noise=noise, classes=["Metal", "Battery"])[1]
    assert record["delta"] == pytest.approx(row["Δ"]) and record["delta_ci"][0] > 0 and record["verdict"] == "gain"
    assert record["per_class_delta"]["Battery"] is None and record["per_class_delta"]["Metal"]["mde"] > 0
    text = "\n".join(lessons(built, table, noise=noise))
    assert f"+ CRF: val mIoU {row['val mIoU']:.4f}, {row['Δ']:+.4f} {row['95% CI']} against best single - a gain" in text


def test_class_deltas_and_the_images_a_step_changes_most():
    base = np.linspace(0.1, 0.6, NUM_CLASSES)
    after = base.copy()
    after[3], after[5] = np.nan, base[5] - 0.2
    deltas = class_deltas({"a": scores(0.3, base), "b": scores(0.3, after)}, {"b": "a"})
    assert deltas.index.tolist() == ["b"] and deltas.columns.tolist() == list(CLASS_NAMES)
    assert np.isnan(deltas.loc["b", CLASS_NAMES[3]]) and deltas.loc["b", CLASS_NAMES[5]] == pytest.approx(-0.2)

    def evaluation(values):
        frame = pd.DataFrame({"index": range(4), "file_name": list("wxyz"), "mIoU": values})
        return Evaluation(np.zeros((NUM_CLASSES, NUM_CLASSES)), scores(0.0), frame)

    before, after_ = evaluation([0.5, 0.5, 0.5, 0.5]), evaluation([0.7, 0.4, 0.5, 0.6])
    assert crf_changes(before, after_, n=2) == (["w", "z"], ["x"])  # y did not change: neither list
    with pytest.raises(ValueError, match="different images"):
        crf_changes(before, Evaluation(None, None, before.per_image.iloc[:2]))


def test_sweep_grid_scales_sxy_and_sets_iterations():
    grid = sweep_grid(["peers-a", "peers-b"], sxy_scales=[1, 2], iters=5)
    assert len(grid) == 4 and all(p.iters == 5 for p in grid)
    assert (grid[1].sxy_gaussian, grid[1].sxy_bilateral, grid[1].srgb) == (6, 20, 50)
    assert sweep_grid(["peers-a", "peers-a"]) == [PRESETS["peers-a"]]
    for bad in ([0], [float("nan")], [True]):
        with pytest.raises(ValueError, match="sxy scales"):
            sweep_grid(["peers-a"], sxy_scales=bad)
    with pytest.raises(ValueError, match="valid: peers-a"):
        sweep_grid(["peers-x"])


# -- the stage 07 submits ---------------------------------------------------------------------------
def saved_stages(tiny_root, mious=(0.5, 0.6, 0.6, 0.55)):
    """05's metrics as the notebook saves them, for stages with the given val mIoUs."""
    recipes = [StageRecipe(("a",)), StageRecipe(("a", "b"), vote="soft"), StageRecipe(("a", "b"), vote="hard"),
               StageRecipe(("a", "b"), vote="soft", crf=CRFParams(), overwrite=2)]
    names = ["best single", "soft vote", "hard vote", "+ overwrite"]
    built = {n: Stage(r, type("Index", (), {"path": f"/probs/{n}"})(), Evaluation(None, scores(m), None))
             for n, r, m in zip(names, recipes, mious)}
    table = stage_table(built, {n: names[0] for n in names[1:]})
    return StagesRecord(data_root=str(tiny_root), stages=stage_records(built, table))


def test_pick_stage_follows_the_source(tiny_root, tmp_path):
    metrics = saved_stages(tiny_root)
    assert pick_stage(metrics, "best-run", data_root=tiny_root) is None
    best = pick_stage(metrics, "best-on-val", data_root=tiny_root)
    assert best["name"] == "soft vote" and best["recipe"] == StageRecipe(("a", "b"), vote="soft")  # a tie: the earlier
    assert best["slug"] == "05-soft-vote" and best["val_mIoU"] == 0.6
    last = pick_stage(metrics, "ensemble", data_root=tiny_root)
    assert last["name"] == "+ overwrite" and last["recipe"].overwrite == 2 and last["slug"] == "05-overwrite"
    assert pick_stage(None, "best-on-val", data_root=tiny_root) is None  # 05 has not run: the best run
    with pytest.raises(FileNotFoundError, match="run 05 first"):
        pick_stage(None, "ensemble", data_root=tiny_root)
    with pytest.raises(ValueError, match="valid: best-run, ensemble, best-on-val"):
        pick_stage(metrics, "best", data_root=tiny_root)
    with pytest.raises(ValueError, match="not on"):
        pick_stage(metrics, "ensemble", data_root=tmp_path)
    broken = dataclasses.replace(metrics, stages=[dataclasses.replace(metrics.stages[0], recipe={"members": []})])
    with pytest.raises(ValueError, match=r"05_crf_ensemble\.json: stages\[0\]\.recipe"):
        pick_stage(broken, "ensemble", data_root=tiny_root)
    with pytest.raises(ValueError, match="non-empty list"):
        pick_stage(StagesRecord(stages=[]), "best-on-val", data_root=tiny_root)
    nan = dataclasses.replace(metrics, stages=[dataclasses.replace(s, val_mIoU=None) for s in metrics.stages])
    with pytest.raises(ValueError, match="finite val_mIoU"):
        pick_stage(nan, "best-on-val", data_root=tiny_root)


def test_stage_records_are_what_the_report_and_the_teacher_read(tiny_root):
    metrics = saved_stages(tiny_root)
    first, last = metrics.stages[0], metrics.stages[-1]
    assert first.built_on is None and first.delta is None and first.verdict == "reference"
    assert first.small_object_recall is None  # these evaluations counted no objects
    assert last.runs == ["a", "b"] and last.recipe["overwrite"] == 2 and len(last.per_class_iou) == NUM_CLASSES
    names = ["best single", "soft vote", "+ CRF"]
    recipes = [StageRecipe(("a",)), StageRecipe(("a", "b"), vote="soft", weights=(3, 1)),
               StageRecipe(("a", "b"), vote="soft", weights=(3, 1), crf=CRFParams())]
    built = {n: Stage(r, type("Index", (), {"path": n})(), Evaluation(None, scores(m), None))
             for n, r, m in zip(names, recipes, [0.5, 0.4, 0.45])}
    table = stage_table(built, {"soft vote": "best single", "+ CRF": "soft vote"})
    noise = ArmResults([scores(0.5), scores(0.4)], seeds=[1, 2], run_names=["a", "a2"])
    records = stage_records(built, table, noise=noise)
    assert records[0]["val_mIoU_std"] == pytest.approx(np.std([0.5, 0.4], ddof=1)) and records[0]["seeds"] == 2
    assert "seeds" not in records[1]
    saved = StagesRecord(data_root=str(tiny_root), stages=records)
    teacher = pick_stage(saved, "best-ensemble", data_root=tiny_root)  # notebook 06's teacher reads it back
    assert teacher["name"] == "+ CRF" and teacher["recipe"] == recipes[2]  # the best with a vote, not the single run
    assert pick_stage(dataclasses.replace(saved, stages=saved.stages[:1]), "best-ensemble", data_root=tiny_root) is None
    assert pick_stage(None, "best-ensemble", data_root=tiny_root) is None


@pytest.mark.integration
def test_a_recipe_rebuilt_on_the_test_split_makes_a_valid_submission(tmp_path, monkeypatch):
    """What notebook 07 does with 05's recipe: members' test maps -> vote -> CRF -> overwrite -> CSV."""
    from conftest import make_tiny_dataset

    from trashlib.submission import index_to_submission, validate_submission

    root = make_tiny_dataset(tmp_path / "data", n_train=1, n_val=1, n_test=2, size=256)
    test = TrashDataset(root, "test_labels")
    rng = np.random.default_rng(1)
    indices = {f"run{m}": write_index(paths.PROBS_DIR / f"run{m}" / "test",
                                      {n: confident(test.load_mask(i), p=0.4 + 0.2 * rng.random())
                                       for i, n in enumerate(test.file_names)}, split="test", data_root=str(root))
               for m in range(3)}
    monkeypatch.setattr("trashlib.postprocess.recipe.resolve_run", lambda name: name)
    monkeypatch.setattr("trashlib.postprocess.recipe.predict", lambda name, *a, **k: indices[name])
    stage = {"name": "+ overwrite", "val_mIoU": 0.5,
             "recipe": StageRecipe(tuple(indices), vote="hard", crf=CRFParams(iters=2), overwrite=3).as_dict()}
    chosen = pick_stage(StagesRecord(data_root=str(root), stages=[stage]), "ensemble", data_root=root)
    index = apply_recipe(chosen["recipe"], root, "test", workers=1)
    out = index_to_submission(index, tmp_path / f"{chosen['slug']}.csv")
    assert out.name == "05-overwrite.csv" and validate_submission(out, root / "test.json") == []
    for i in range(len(index)):  # the members agree with the labels: every step keeps them
        assert (index.argmax(i) == test.load_mask(test.file_names.index(index.file_names[i]))).all()
