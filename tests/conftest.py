"""Shared fixtures: small datasets in the competition layout, made by code (no committed binaries)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


_MODELS: dict = {}


def tiny_model(name: str):
    """One tiny random-init model per factory name for the whole session (building costs more than using)."""
    if name not in _MODELS:
        import torch

        from trashlib.models import build_model

        torch.manual_seed(0)
        _MODELS[name] = build_model(name)
    return _MODELS[name]


def cli_help(*argv: str, columns: int = 300) -> str:
    """The --help text of a `python -m trashlib` subcommand, made in this process (a subprocess costs seconds
    of imports; one test, test_python_dash_m_prints_one_line_for_a_bad_test_json, keeps the real entry point)."""
    import contextlib
    import io

    from trashlib.cli import main

    out, old = io.StringIO(), os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
            main([*argv, "--help"])
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    assert e.value.code == 0
    return out.getvalue()


@pytest.fixture
def fake_run(tmp_path) -> Path:
    """A run folder with a config and an (empty) checkpoint: enough to be found, not to be loaded."""
    from trashlib.config import TrainConfig

    run = tmp_path / "runs" / "fake-run"
    (run / "checkpoints").mkdir(parents=True)
    TrainConfig(model="segformer", steps=1, batch_size=1, image_size=64).to_yaml(run / "config.yaml")
    (run / "checkpoints" / "best.safetensors").write_bytes(b"")
    (run / "checkpoints" / "last-1").mkdir()  # the last weights, which predict uses
    (run / "checkpoints" / "last-1" / "last.safetensors").write_bytes(b"")
    (run / "checkpoints" / "last-1" / "last_state.json").write_text("{}")
    return run


def write_index(folder, maps: dict, **settings):
    """A ProbIndex of hand-made (C, H, W) maps keyed by file name (no model needed)."""
    from trashlib.predict.probs import ProbWriter

    items = [{"image_id": i, "file_name": name, "shape": list(p.shape)} for i, (name, p) in enumerate(maps.items())]
    writer = ProbWriter(folder, items, {"made": str(folder), **settings})
    for i, p in enumerate(maps.values()):
        writer.write(i, p)
    return writer.close()


def confident(mask, *, p: float, num_classes: int = 11):
    """Probabilities with p on the mask's label and the rest spread evenly."""
    out = np.full((num_classes, *mask.shape), (1 - p) / (num_classes - 1), np.float32)
    np.put_along_axis(out, mask[None].astype(np.int64), p, axis=0)
    return out


def make_tiny_dataset(root: Path, *, n_train: int = 4, n_val: int = 2, n_test: int = 2,
                      size: int = 64, seed: int = 0) -> Path:
    """A valid dataset of coloured random polygons: {train_all,train,val,test}.json + test_labels.json.

    Each class gets its own colour, so a model can learn it in a few steps; polygons are convex
    quadrilaterals of random classes, painted (and annotated) largest first.
    """
    from PIL import Image
    from pycocotools import mask as mask_utils

    from trashlib.classes import CLASSES, coco_categories

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "batch_01").mkdir(exist_ok=True)
    splits = {"train": [], "val": [], "test": []}
    images, anns = {}, {}
    ann_id = 0
    for i, split in enumerate(["train"] * n_train + ["val"] * n_val + ["test"] * n_test):
        image_id = i
        file_name = f"batch_01/{i:04d}.jpg"
        img = np.full((size, size, 3), 90, np.uint8) + rng.integers(0, 20, (size, size, 3), dtype=np.uint8)
        objs = []
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(0.2, 0.8, 2) * size
            r = rng.uniform(0.08, 0.3) * size
            angles = np.sort(rng.uniform(0, 2 * np.pi, 4))
            poly = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).clip(0, size - 1)
            cat = int(rng.integers(1, len(CLASSES)))
            rle = mask_utils.frPyObjects([poly.ravel().tolist()], size, size)
            area = float(mask_utils.area(mask_utils.merge(rle)))
            if area < 4:
                continue
            objs.append((area, cat, poly))
        objs.sort(key=lambda o: -o[0])
        file_anns = []
        for area, cat, poly in objs:
            m = mask_utils.decode(mask_utils.frPyObjects([poly.ravel().tolist()], size, size))[..., 0].astype(bool)
            img[m] = CLASSES[cat].color if cat != 0 else (0, 0, 0)
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            file_anns.append({"id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                              "area": area, "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                              "segmentation": [poly.ravel().round(1).tolist()]})
            ann_id += 1
        Image.fromarray(img).save(root / file_name, quality=95)
        splits[split].append(image_id)
        images[image_id] = {"id": image_id, "file_name": file_name, "width": size, "height": size}
        anns[image_id] = file_anns

    def coco(ids, with_anns=True):
        d = {"info": {"description": "trashlib test fixture"}, "licenses": [],
             "images": [images[i] for i in ids], "categories": coco_categories()}
        if with_anns:
            d["annotations"] = [a for i in ids for a in anns[i]]
        return d

    for name, ids, with_anns in [("train", splits["train"], True), ("val", splits["val"], True),
                                 ("train_all", splits["train"] + splits["val"], True),
                                 ("test", splits["test"], False), ("test_labels", splits["test"], True)]:
        (root / f"{name}.json").write_text(json.dumps(coco(ids, with_anns)))
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A read-only-by-convention tiny dataset (64x64 images); copy it before corrupting it."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture
def tiny_copy(tiny_root, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may corrupt."""
    return Path(shutil.copytree(tiny_root, tmp_path / "data"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Send every derived file (mask caches, runs) to a temporary folder, never the project's."""
    import trashlib.paths as paths

    base = tmp_path_factory.getbasetemp()
    monkeypatch.setattr(paths, "INTERIM_DIR", base / "interim")
    monkeypatch.setattr(paths, "RUNS_DIR", base / "runs")


@pytest.fixture(scope="session", autouse=True)
def _no_run_escapes_to_the_project(tmp_path_factory):
    """Fails the session when a test trained into the project's runs folder (`monkeypatch.undo()` in a
    test, for one, undoes `_isolated_cache` too): a run there whose data lies in pytest's temporary folder."""
    import trashlib.paths as paths

    project_runs = Path(paths.RUNS_DIR)
    yield
    base = str(tmp_path_factory.getbasetemp())
    leaked = sorted(c.parent.name for c in project_runs.glob("*/config.yaml") if base in c.read_text(errors="replace"))
    assert not leaked, f"tests trained into the project's {project_runs}: {leaked}"


@pytest.fixture(scope="session")
def taco_root() -> Path:
    """The 24 real TACO photos in the competition layout; skips when absent."""
    from trashlib.paths import SHARED_TACO_DIR

    if not (SHARED_TACO_DIR / "train_all.json").exists():
        pytest.skip(f"real data not present at {SHARED_TACO_DIR}")
    return SHARED_TACO_DIR


@pytest.fixture(scope="session")
def taco_raw_root() -> Path:
    """TACO's own files (official annotations, 7 unofficial photos with theirs); skips when absent."""
    from trashlib.paths import SHARED_TACO_RAW_DIR

    if not (SHARED_TACO_RAW_DIR / "data" / "annotations_unofficial.json").exists():
        pytest.skip(f"TACO's files not present at {SHARED_TACO_RAW_DIR}")
    return SHARED_TACO_RAW_DIR
