"""One scene: a floor, a pile of objects with drop shadows, lighting, camera finish, and its annotations.

Objects are drawn largest first, as the competition paints its label maps (annotations sorted by
area, descending), so the label map agrees with what is seen. The exception is a plastic bag's
contents: drawn under the translucent bag, but labelled on top of it, as the competition does.
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from trashlib.synth.objects import BAG_ID, render_object, sample_classes, sample_count
from trashlib.synth.shapes import Sprite, clip_polygon, rotate, simplify
from trashlib.synth.textures import background, finish, lighting

MIN_AREA = 30.0  # px; smaller slivers (mostly objects leaving the frame) are dropped


class Scene(NamedTuple):
    """A rendered scene before JPEG: the picture, its annotations, and what was actually drawn where."""

    image: np.ndarray  # (S, S, 3) uint8 RGB
    annotations: list[dict]  # category_id, segmentation, area, bbox, iscrowd (ids are set by the writer)
    quality: int  # JPEG quality the writer uses
    drawn: np.ndarray  # (S, S) uint8 category of the topmost object drawn (a bag never hides its contents)


def _rng(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def _polygon(outline: np.ndarray, size: int):
    """COCO polygon of an outline in image pixels (COCO puts pixel centres at +0.5), clipped to the image
    and rounded, with its pycocotools area and bbox; None if too small."""
    poly = clip_polygon(outline + np.float32(0.5), 0, size - 1)
    if len(poly) >= 3:
        poly = simplify(poly)
    if len(poly) < 3:
        return None
    flat = [round(float(c), 1) for c in poly.ravel()]
    area = float(mask_utils.area(mask_utils.frPyObjects([flat], size, size)[0]))
    if area < MIN_AREA:
        return None
    xs, ys = flat[0::2], flat[1::2]
    bbox = [min(xs), min(ys), round(max(xs) - min(xs), 1), round(max(ys) - min(ys), 1)]
    return flat, area, bbox


def _composite(image: np.ndarray, sprite: Sprite, x0: int, y0: int, *, shadow_dir, strength: float) -> None:
    """Darken the floor under a soft, offset shadow, then alpha-blend the sprite; in place, clipped."""
    size = image.shape[0]
    h, w = sprite.alpha.shape
    scale = size / 512
    off = np.asarray(shadow_dir) * (2 + 12 * sprite.height) * scale
    sigma = (1.5 + 5 * sprite.height) * scale
    pad = int(np.ceil(np.abs(off).max() + 3 * sigma)) + 1
    shadow = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
    dx, dy = int(round(off[0])), int(round(off[1]))
    shadow[pad + dy:pad + dy + h, pad + dx:pad + dx + w] = sprite.alpha
    # a soft shadow needs no full resolution: blur at half size (4x cheaper) and scale back
    small = cv2.resize(shadow, ((w + 2 * pad + 1) // 2, (h + 2 * pad + 1) // 2), interpolation=cv2.INTER_AREA)
    shadow = cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / 2), (w + 2 * pad, h + 2 * pad))
    layers = [(shadow, x0 - pad, y0 - pad, None), (sprite.alpha, x0, y0, sprite.rgb)]
    for alpha, ox, oy, rgb in layers:
        ah, aw = alpha.shape
        ix0, iy0, ix1, iy1 = max(ox, 0), max(oy, 0), min(ox + aw, size), min(oy + ah, size)
        if ix0 >= ix1 or iy0 >= iy1:
            continue
        a = np.ascontiguousarray(alpha[iy0 - oy:iy1 - oy, ix0 - ox:ix1 - ox])
        region = image[iy0:iy1, ix0:ix1]
        if rgb is None:  # cv2 instead of numpy broadcasting: 4-5x faster on (h, w, 3) float32
            f = 1 - np.float32(strength * sprite.shadow) * a
            region[:] = cv2.multiply(region, cv2.merge([f, f, f]))
        else:
            src = np.ascontiguousarray(rgb[iy0 - oy:iy1 - oy, ix0 - ox:ix1 - ox])
            region[:] = cv2.blendLinear(src, np.ascontiguousarray(region), a, 1 - a)


def _visible_outline(outline: np.ndarray, covers: list[np.ndarray], size: int):
    """The largest piece of a shape left uncovered by shapes drawn over it (all image pixels); or None."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(outline * 16).astype(np.int32)], 1, shift=4)
    for other in covers:
        cv2.fillPoly(mask, [np.round(other * 16).astype(np.int32)], 0, shift=4)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    return max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float32)


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((a.min(0) <= b.max(0)).all() and (b.min(0) <= a.max(0)).all())


def _render_order(areas: list[float], classes: list[int], contents: dict[int, list[int]]) -> list[int]:
    """Largest first; a bag's contents go just before their bag (under it in the picture)."""
    inside = {i for c in contents.values() for i in c}
    order = []
    for i in sorted(range(len(areas)), key=lambda i: -areas[i]):
        if i in inside:
            continue
        if classes[i] == BAG_ID:
            order += sorted(contents.get(i, []), key=lambda j: -areas[j])
        order.append(i)
    return order


def _mark_drawn(drawn: np.ndarray, outline: np.ndarray, index: int, keep: list[int]) -> None:
    """Record `index` inside an outline (image pixels), except over the objects in `keep`."""
    cover = np.zeros(drawn.shape, np.uint8)
    cv2.fillPoly(cover, [np.round(outline * 16).astype(np.int32)], 1, shift=4)
    cover = cover.astype(bool)
    if keep:
        cover &= ~np.isin(drawn, keep)
    drawn[cover] = index


def compose_scene(rng_or_seed, *, image_size: int = 512) -> Scene:
    """Render a scene before JPEG compression: image, annotations, JPEG quality and the drawn-object map."""
    rng = _rng(rng_or_seed)
    size = image_size
    image = background(rng, size)
    angle = rng.uniform(0, 2 * np.pi)
    shadow_dir = np.array([np.cos(angle), np.sin(angle)])
    classes = [int(c) for c in sample_classes(rng, sample_count(rng))]
    zoom = float(np.exp(rng.uniform(np.log(0.8), np.log(1.5))))  # close-ups and wide shots
    sprites = [rotate(render_object(rng, c, image_size=size, zoom=zoom), rng.uniform(0, 360)) for c in classes]
    pile = rng.uniform(0.3, 0.7, 2) * size
    centres = []
    for _ in classes:
        c = rng.uniform(0.05, 0.95, 2) * size if rng.random() < 0.3 else pile + rng.normal(0, 0.2 * size, 2)
        centres.append(np.clip(c, 0.02 * size, 0.98 * size))
    sizes = [float(s.alpha.sum()) for s in sprites]
    contents: dict[int, list[int]] = {}
    taken: set[int] = set()
    for b, sprite in enumerate(sprites):
        # only see-through bags hold things: under a black bag the label could not be seen
        if classes[b] != BAG_ID or rng.random() > 0.6 or np.median(sprite.alpha[sprite.alpha > 0.05]) > 0.75:
            continue
        small = [j for j, c in enumerate(classes)
                 if j not in taken and c not in (BAG_ID, 10) and sizes[j] < 0.35 * sizes[b]]
        chosen = [int(j) for j in rng.permutation(small)[:int(rng.integers(1, 4))]]
        ys, xs = np.nonzero(sprite.alpha > 0.3 * sprite.alpha.max())
        bx, by = centres[b] - np.array(sprite.alpha.shape[::-1]) / 2
        for j in chosen:
            k = int(rng.integers(len(xs)))
            centres[j] = np.array([bx + xs[k], by + ys[k]])
        contents[b] = chosen
        taken.update(chosen)
    origins = [(int(c[0] - s.alpha.shape[1] / 2), int(c[1] - s.alpha.shape[0] / 2)) for c, s in zip(centres, sprites)]
    outlines = [s.outline + np.float32(o) for s, o in zip(sprites, origins)]
    polys = [_polygon(o, size) for o in outlines]
    areas = [p[1] if p else 0.0 for p in polys]
    order = [i for i in _render_order(areas, classes, contents) if polys[i]]
    pos = {i: k for k, i in enumerate(order)}
    for b, inside in contents.items():
        for c in (c for c in inside if c in pos):
            # things drawn over a bag's content are painted under it (they are larger): cut them out of its label
            covers = [outlines[j] for j in order[pos[c] + 1:] if j != b and _overlap(outlines[j], outlines[c])]
            if covers:
                visible = _visible_outline(outlines[c], covers, size)
                polys[c] = None if visible is None else _polygon(visible, size)
    drawn = np.full((size, size), -1, np.int16)
    for i in order:
        _composite(image, sprites[i], *origins[i], shadow_dir=shadow_dir, strength=rng.uniform(0.3, 0.5))
        _mark_drawn(drawn, outlines[i], i, contents.get(i, []))
    image = finish(rng, image * lighting(rng, size, angle=angle))
    anns = [{"category_id": classes[i], "segmentation": [polys[i][0]], "area": polys[i][1],
             "bbox": polys[i][2], "iscrowd": 0} for i in order if polys[i]]
    lookup = np.array(classes + [0], np.uint8)  # index -1 (nothing drawn) is background
    return Scene(image, anns, int(rng.integers(75, 91)), lookup[drawn])


def encode_scene(rng_or_seed, *, image_size: int = 512) -> tuple[bytes, list[dict]]:
    """A scene as the JPEG bytes the dataset stores, with its annotations."""
    image, anns, quality, _ = compose_scene(rng_or_seed, image_size=image_size)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes(), anns


def render_scene(rng_or_seed, *, image_size: int = 512) -> tuple[np.ndarray, list[dict]]:
    """One scene exactly as the dataset stores it (after JPEG): (image (S, S, 3) uint8 RGB, annotations).

    `render_scene((seed, i))` is image i (in file order) of `generate_dataset(..., seed=seed)`, before
    the deliberate mislabels.
    """
    data, anns = encode_scene(rng_or_seed, image_size=image_size)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), anns
