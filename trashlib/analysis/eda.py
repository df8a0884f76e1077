"""Dataset statistics in one streaming pass: class counts, pixel shares, colours, areas, containment.

`collect_stats` reads each image once (never holding more than one), and gathers everything the EDA
notebook plots, plus the per-annotation appearance features that `trashlib.analysis.mislabel` ranks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd
from pycocotools import mask as mask_utils
from tqdm.auto import tqdm

from trashlib.analysis.mislabel import image_feature_maps, region_features
from trashlib.classes import CLASS_NAMES, COMPETITION_COUNTS, NUM_CLASSES, class_id
from trashlib.data.raster import annotation_rle
from trashlib.progress import shown

PLASTIC_BAG = class_id("Plastic bag")
ANNOTATION_COLUMNS = ["annotation_id", "index", "image_id", "file_name", "category_id", "area", "area_share",
                      "visible_share", "bag_cover", "bbox"]


def subsample_indices(n: int, max_images: int | None) -> np.ndarray:
    """`max_images` indices spread evenly over range(n) (all of them when None or >= n)."""
    if max_images is None or max_images >= n:
        return np.arange(n)
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1 or None, got {max_images}")
    return np.unique(np.linspace(0, n - 1, max_images).round().astype(int))


def annotation_mask(ann: dict, *, height: int, width: int) -> np.ndarray:
    """The (H, W) bool mask of one COCO annotation (polygons or RLE), rasterised as the label maps are."""
    try:
        return mask_utils.decode(annotation_rle(ann, height=height, width=width)).astype(bool)
    except Exception as e:
        raise ValueError(f"annotation {ann.get('id')} of image {ann.get('image_id')}: bad segmentation ({e})") from None


def instance_map(masks: list[np.ndarray], areas: list[float]) -> np.ndarray:
    """Which annotation each pixel shows: painted largest first, as the label maps are (-1 = none).

    Shape:
        masks: list of (H, W) bool; returns: (H, W) int32 index into masks.
    """
    if not masks:
        raise ValueError("instance_map needs at least one mask")
    out = np.full(masks[0].shape, -1, np.int32)
    for j in np.argsort(-np.asarray(areas, dtype=float), kind="stable"):
        out[masks[j]] = j
    return out


def _window(bbox, h: int, w: int) -> tuple[slice, slice]:
    """Slices of the image covering a COCO bbox with a pixel of margin (the whole image without one)."""
    if not bbox:
        return slice(0, h), slice(0, w)
    x, y, bw, bh = bbox
    return (slice(max(0, int(y) - 1), min(h, int(np.ceil(y + bh)) + 2)),
            slice(max(0, int(x) - 1), min(w, int(np.ceil(x + bw)) + 2)))


def contained_objects(masks: list[np.ndarray], category_ids: list[int], *, container: int = PLASTIC_BAG,
                      min_inside: float = 0.5) -> list[tuple[int, int, float]]:
    """(container index, object index, inside fraction) for every object of another class whose
    area lies at least `min_inside` inside a container-class polygon (indices into `masks`)."""
    found = []
    areas = [int(m.sum()) for m in masks]
    for b, (mb, cb) in enumerate(zip(masks, category_ids)):
        if cb != container:
            continue
        for j, (mj, cj) in enumerate(zip(masks, category_ids)):
            if cj == container or areas[j] == 0:
                continue
            frac = np.logical_and(mb, mj).sum() / areas[j]
            if frac >= min_inside:
                found.append((b, j, float(frac)))
    return found


@dataclass
class DatasetStats:
    """What one pass over a split found; `annotations` has one row per annotation."""

    indices: np.ndarray                       # dataset indices analysed
    pixel_counts: np.ndarray                  # (NUM_CLASSES,) pixels per class, background included
    objects_per_image: np.ndarray             # (n_images,)
    annotations: pd.DataFrame                 # ANNOTATION_COLUMNS, one row per annotation
    colours: dict[int, np.ndarray]            # class id -> (n, 3) float HSV samples (h in degrees, s, v in 0..1)
    features: np.ndarray                      # (n_annotations, n_features) appearance features
    containment: pd.DataFrame                 # one row per (bag, object inside it)
    class_images: dict[int, list[int]] = field(default_factory=dict)  # class id -> dataset indices

    @property
    def instance_counts(self) -> np.ndarray:
        """(NUM_CLASSES,) annotations per class (index 0, background, is 0)."""
        return np.bincount(self.annotations["category_id"].to_numpy(int), minlength=NUM_CLASSES)[:NUM_CLASSES]


def _colour_sample(image, mask, rng, per_class: int) -> dict[int, np.ndarray]:
    out = {}
    for c in np.unique(mask):
        if not 0 < c < NUM_CLASSES:
            continue
        ys, xs = np.nonzero(mask == c)
        pick = rng.choice(len(ys), size=min(per_class, len(ys)), replace=False)
        hsv = cv2.cvtColor(image[ys[pick], xs[pick]][:, None, :], cv2.COLOR_RGB2HSV_FULL)[:, 0]
        out[int(c)] = hsv
    return out


def _describe_objects(anns: list[dict], *, image_index: int, file_name: str, height: int, width: int,
                      maps: dict | None, min_inside: float) -> tuple[list[dict], list[np.ndarray], list[dict]]:
    """One image's annotation rows, appearance features (when `maps`) and bag containment records."""
    masks = [annotation_mask(a, height=height, width=width) for a in anns]
    areas = [float(a.get("area") or m.sum()) for a, m in zip(anns, masks)]
    cats = [int(a["category_id"]) for a in anns]
    inst = instance_map(masks, areas)
    bags = [b for b, c in enumerate(cats) if c == PLASTIC_BAG]
    rows, feats = [], []
    for j, a in enumerate(anns):
        win = _window(a.get("bbox"), height, width)
        visible = inst[win] == j
        shown, full = int(visible.sum()), max(1, int(masks[j][win].sum()))
        under_bag = max([float((masks[b][win] & masks[j][win]).sum()) / full for b in bags if b != j], default=0.0)
        rows.append({"annotation_id": a["id"], "index": image_index, "image_id": a["image_id"],
                     "file_name": file_name, "category_id": cats[j], "area": areas[j],
                     "area_share": areas[j] / (height * width), "visible_share": shown / full,
                     "bag_cover": under_bag, "bbox": a.get("bbox")})
        if maps is not None:
            seg = a["segmentation"]
            region = visible if shown >= 16 else masks[j][win]      # a hidden object: judge its whole polygon
            feats.append(region_features(maps, region, window=(win[0].start, win[0].stop, win[1].start, win[1].stop),
                                         polygon=max(seg, key=len) if isinstance(seg, list) else None,
                                         visible_share=shown / full, bag_cover=under_bag))
    inside = [{"index": image_index, "bag_id": anns[b]["id"], "object_id": anns[j]["id"], "category_id": cats[j],
               "inside": frac} for b, j, frac in contained_objects(masks, cats, min_inside=min_inside)]
    return rows, feats, inside


def collect_stats(dataset, *, max_images: int | None = None, colour_pixels: int = 200,
                  with_features: bool = True, min_inside: float = 0.5, seed: int = 0,
                  progress: bool | None = None) -> DatasetStats:
    """Walk the (evenly subsampled) split once and gather every EDA statistic.

    colour_pixels: pixels sampled per image and class for the colour plots (0: none);
    with_features: compute the mislabel features; min_inside: containment threshold.
    """
    indices = subsample_indices(len(dataset), max_images)
    rng = np.random.default_rng(seed)
    pixel_counts = np.zeros(NUM_CLASSES, np.int64)
    objects, rows, feats, inside = [], [], [], []
    colours: dict[int, list] = {c: [] for c in range(1, NUM_CLASSES)}
    class_images: dict[int, list[int]] = {c: [] for c in range(1, NUM_CLASSES)}
    iterator = indices
    if shown(progress):
        iterator = tqdm(indices, desc="EDA", unit="img")
    for i in iterator:
        i = int(i)
        anns = dataset.annotations(i)
        objects.append(len(anns))
        for c in {int(a["category_id"]) for a in anns} & set(class_images):
            class_images[c].append(i)
        mask = dataset.load_mask(i)
        if mask is None or not anns:   # an unlabelled split, or an image without objects
            if mask is not None:
                pixel_counts[0] += mask.size
            continue
        pixel_counts += np.bincount(mask.ravel(), minlength=256)[:NUM_CLASSES]
        image = dataset.load_image(i) if with_features or colour_pixels else None
        if colour_pixels:
            for c, hsv in _colour_sample(image, mask, rng, colour_pixels).items():
                colours[c].append(hsv)
        r, f, b = _describe_objects(anns, image_index=i, file_name=dataset.file_names[i], height=mask.shape[0],
                                    width=mask.shape[1], maps=image_feature_maps(image) if with_features else None,
                                    min_inside=min_inside)
        rows += r
        feats += f
        inside += b
    hsv = {c: (np.concatenate(v).astype(np.float32) * np.array([360 / 256, 1 / 255, 1 / 255], np.float32)
               if v else np.zeros((0, 3), np.float32)) for c, v in colours.items()}
    return DatasetStats(
        indices=indices, pixel_counts=pixel_counts, objects_per_image=np.asarray(objects), colours=hsv,
        annotations=pd.DataFrame(rows, columns=ANNOTATION_COLUMNS),
        features=np.asarray(feats, np.float32).reshape(len(feats), -1 if feats else 0),
        containment=pd.DataFrame(inside, columns=["index", "bag_id", "object_id", "category_id", "inside"]),
        class_images=class_images)


def class_table(stats: DatasetStats) -> pd.DataFrame:
    """Per foreground class: instances, instance share, pixel shares, images, competition share."""
    counts = stats.instance_counts[1:]
    pix = stats.pixel_counts.astype(float)
    comp = np.array([COMPETITION_COUNTS.get(n, 0) for n in CLASS_NAMES[1:]], float)
    return pd.DataFrame({
        "instances": counts,
        "instance_share": counts / max(1, counts.sum()),
        "competition_share": comp / comp.sum(),
        "pixel_share": pix[1:] / max(1.0, pix.sum()),             # of all pixels, background included
        "pixel_share_fg": pix[1:] / max(1.0, pix[1:].sum()),      # of object pixels only
        "images": [len(stats.class_images.get(c, [])) for c in range(1, NUM_CLASSES)],
    }, index=pd.Index(CLASS_NAMES[1:], name="class"))


def containment_summary(stats: DatasetStats) -> dict:
    """How often plastic bags hold objects of other classes, and which classes."""
    bags = int((stats.annotations["category_id"] == PLASTIC_BAG).sum())
    holding = int(stats.containment["bag_id"].nunique()) if len(stats.containment) else 0
    by_class = stats.containment["category_id"].value_counts()
    return {"n_bags": bags, "n_bags_containing": holding,
            "bag_containment_rate": holding / bags if bags else float("nan"),
            "n_contained_objects": int(len(stats.containment)),
            "contained_by_class": {CLASS_NAMES[int(c)]: int(n) for c, n in by_class.items()}}


def bag_example(stats: DatasetStats, *, max_objects: int = 3) -> tuple[int, list[int]] | None:
    """A readable containment example: the largest bag holding 1 to `max_objects` objects (the largest
    bag holding any when none is that small). Returns (dataset index, [bag id, *ids of the objects
    inside]) or None when no bag in the analysed images holds another object."""
    if not len(stats.containment):
        return None
    per_bag = stats.containment.groupby("bag_id").size()
    sizes = stats.annotations.drop_duplicates("annotation_id").set_index("annotation_id")["area"]
    candidates = per_bag[per_bag <= max_objects].index if (per_bag <= max_objects).any() else per_bag.index
    bag_id = max(candidates, key=lambda b: sizes[b])
    inside = stats.containment[stats.containment["bag_id"] == bag_id]
    return int(inside["index"].iloc[0]), [int(bag_id), *(int(a) for a in inside["object_id"])]
