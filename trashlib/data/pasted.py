"""Copy & paste of a TrainConfig: its `Paster`, and the offline pasted set materialised under data/interim/.

The `cp_*` fields of a config are one recipe (`build_paster`): which donors (objects of the training
split drawn uniform, by inverse class frequency or from a class list, or ClassMix partners), how many
objects, their scale and the edge blending. `copy_paste` says where it is applied:

- online (`online_paster`): the training stream pastes each drawn sample with probability `cp_prob`,
  using the sample's own generator (`copy_paste.paste_rng`), so resuming a run repeats its pastes;
- offline (`materialise_pasted`): `cp_copies` pasted copies of every training image, written once as
  PNG images and label maps (a label-map set, `trashlib.data.labelmaps`) at the working resolution
  (`work_size`, where online pastes too and the training brings every image) into
  data/interim/label-maps/copy-paste-<recipe hash>/ and trained on beside the originals. Copy k of
  image i is pasted with `offline_rng(seed, i, k)` by the same `Paster`, always: with the originals,
  N copies show a paste in N/(N+1) of the images drawn (online's `cp_prob` = 0.5 for one copy).
  The recipe, with the split's sha1 and the seed, names the folder: the same recipe reuses the set,
  a changed one writes a new set beside the old one; nothing is deleted.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from trashlib import paths
from trashlib.classes import class_id
from trashlib.data.copy_paste import Paster, paste_rng
from trashlib.data.dataset import TrashDataset
from trashlib.data.donors import MAX_PER_CLASS, MIN_AREA, donor_bank
from trashlib.data.labelmaps import INDEX_FILE, LabelMapDataset, remove_stale_temporaries, write_label_maps
from trashlib.data.leakage import check_train_split
from trashlib.io import check_writable
from trashlib.progress import shown

RECIPE_VERSION = 2     # bump when pasting changes what a recipe produces (2: at the working resolution)
OFFLINE_STREAM = 0x0FF1


def build_paster(cfg, *, work_size: int | None = None) -> Paster:
    """The copy-paste recipe of a TrainConfig's cp_* fields, whatever its `copy_paste` mode (pasting at
    `work_size` when given, see `Paster`)."""
    common = dict(prob=cfg.cp_prob, blend_sigma=cfg.cp_blend_sigma, work_size=work_size)
    if cfg.cp_donors == "classmix":
        return Paster(partners=TrashDataset(cfg.data_root, split=cfg.train_split), **common)
    bank = donor_bank(cfg.data_root, cfg.train_split, work_size=work_size)
    return Paster(donors=bank.donors, counts=bank.counts, sampling=cfg.cp_donors,
                  classes=tuple(class_id(name) for name in cfg.cp_classes), max_objects=cfg.cp_max_objects,
                  scale_range=tuple(cfg.cp_scale), **common)


def pastable_variants(variants: dict[str, dict], counts: dict[int, int]) -> tuple[dict[str, dict], list[str]]:
    """The arms whose class lists (`cp_classes`) the training split can paste, each list cut to the classes with
    objects (`counts`: objects per class id, a DonorBank's), and a sentence per arm cut or dropped.

    A class list naming a class the split lacks is an error when pasting (`copy_paste.class_probabilities`);
    a small dataset (a TACO sample) may lack every rare class of the competition.
    """
    kept, said = {}, []
    for name, fields in variants.items():
        listed = list(fields.get("cp_classes", ()))
        present = [c for c in listed if counts.get(class_id(c), 0) > 0]
        if present != listed:
            lacking = ", ".join(c for c in listed if c not in present)
            said.append(f"{name}: the training split has no {lacking}; " + (f"pastes {', '.join(present)} only"
                                                                               if present else "arm dropped"))
        if present or not listed:
            kept[name] = {**fields, "cp_classes": present} if listed else fields
    return kept, said


def online_paster(cfg) -> Paster | None:
    """What the training stream pastes with: the recipe when `copy_paste` is online (at the working
    resolution, where the augmentation brings every image first), else None."""
    return build_paster(cfg, work_size=cfg.work_size) if cfg.copy_paste == "online" else None


def offline_rng(seed: int, index: int, copy: int) -> np.random.Generator:
    """The generator of pasted copy `copy` of training image `index`."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), int(copy), OFFLINE_STREAM]))


def pasted_recipe(cfg) -> dict:
    """Everything the offline set of a config depends on (JSON types, as index.json stores it)."""
    dataset = TrashDataset(cfg.data_root, split=cfg.train_split)
    return {"kind": "copy-paste", "version": RECIPE_VERSION, "data_root": str(dataset.root),
            "split": cfg.train_split, "data_sha1": dataset.sha1, "donors": cfg.cp_donors,
            "classes": list(cfg.cp_classes), "max_objects": cfg.cp_max_objects, "scale": list(cfg.cp_scale),
            "blend_sigma": cfg.cp_blend_sigma, "copies": cfg.cp_copies, "seed": cfg.seed, "work_size": cfg.work_size,
            "donor_bank": {"max_per_class": MAX_PER_CLASS, "min_area": MIN_AREA}}


def recipe_hash(recipe: dict) -> str:
    """12 hex digits of the sha1 of the recipe's JSON."""
    return hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def pasted_folder(cfg, recipe: dict | None = None) -> Path:
    """data/interim/label-maps/copy-paste-<recipe hash>: where the offline set of `cfg` lives."""
    return Path(paths.INTERIM_DIR) / "label-maps" / f"copy-paste-{recipe_hash(recipe or pasted_recipe(cfg))}"


def _existing(folder: Path, recipe: dict) -> LabelMapDataset:
    found = LabelMapDataset(folder)
    if found.recipe != recipe:
        raise ValueError(f"{folder / INDEX_FILE}: holds another recipe than its name says ({found.recipe}); "
                         "it was edited by hand: move it away to have the set written again")
    return found


def materialise_pasted(cfg, *, progress: bool | None = None) -> LabelMapDataset:
    """The offline pasted set of `cfg`: reused when its folder exists, else written (atomically) and returned.

    Pasted from the train split alone (refused when it shares an image with the val split); what a killed
    writer of this set left is removed first.
    """
    check_train_split(cfg.data_root, cfg.train_split, cfg.val_split)
    recipe = pasted_recipe(cfg)
    folder = pasted_folder(cfg, recipe)
    remove_stale_temporaries(folder)
    if (folder / INDEX_FILE).is_file():
        return _existing(folder, recipe)
    check_writable(folder.parent, what=f"the pasted set {folder}")
    dataset = TrashDataset(cfg.data_root, split=cfg.train_split)
    paster = build_paster(cfg, work_size=cfg.work_size)  # 1/16 of the pixels to paste and write at 128 for 512
    order = [(i, k) for i in range(len(dataset)) for k in range(cfg.cp_copies)]

    def samples():
        for i, k in tqdm(order, desc="copy-paste set", unit="img", disable=not shown(progress)):
            image, mask = paster.paste(*dataset[i], offline_rng(cfg.seed, i, k))
            yield f"{dataset.file_names[i]}#copy-paste-{k}", image, mask

    try:
        return write_label_maps(folder, samples(), recipe=recipe)
    except FileExistsError:
        if (folder / INDEX_FILE).is_file():  # another process wrote the same set meanwhile
            return _existing(folder, recipe)
        raise


def pasted_examples(cfg, n: int = 3) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(images, label maps, titles) of `n` pasted training images as `cfg` trains on them, before the
    augmentation: the first items of its offline set, or the first training images pasted as online would,
    both at the working resolution.

    Shape:
        each image (H, W, 3) uint8, each label map (H, W) uint8.
    """
    if cfg.copy_paste == "offline":
        found = materialise_pasted(cfg)
        picked = [(found.file_names[j], *found[j]) for j in range(0, min(n * cfg.cp_copies, len(found)), cfg.cp_copies)]
    else:
        dataset, paster = TrashDataset(cfg.data_root, split=cfg.train_split), build_paster(cfg, work_size=cfg.work_size)
        picked = [(dataset.file_names[i], *paster.paste(*dataset[i], paste_rng(cfg.seed, i)))
                  for i in range(min(n, len(dataset)))]
    return [p[1] for p in picked], [p[2] for p in picked], [p[0] for p in picked]
