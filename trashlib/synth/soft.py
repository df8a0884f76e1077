"""Soft and mixed objects: translucent plastic bags, clothing, wrappers, tissues, trays, odd trash."""
from __future__ import annotations

import numpy as np

from trashlib.synth.materials import PRINT_COLORS, crumple, pick, print_design, relief
from trashlib.synth.shapes import Sprite, blob, canvas_for, fill, superellipse, wobble
from trashlib.synth.solids import paper_cup
from trashlib.synth.textures import grain, noise

# (colour, opacity range): clear and white bags show what is under them, dark ones barely.
_BAGS = [([0.95, 0.95, 0.95], (0.45, 0.7)), ([0.92, 0.94, 0.95], (0.22, 0.38)), ([0.06, 0.06, 0.07], (0.8, 0.92)),
         ([0.2, 0.4, 0.8], (0.55, 0.8)), ([0.85, 0.3, 0.45], (0.55, 0.8)), ([0.95, 0.85, 0.3], (0.5, 0.75)),
         ([0.4, 0.7, 0.4], (0.5, 0.75))]
_BAG_WEIGHTS = np.array([0.34, 0.16, 0.16, 0.1, 0.08, 0.08, 0.08])
_FABRIC = [[0.2, 0.3, 0.5], [0.12, 0.12, 0.14], [0.55, 0.55, 0.57], [0.9, 0.9, 0.88], [0.7, 0.15, 0.15],
           [0.25, 0.45, 0.3], [0.7, 0.62, 0.45], [0.15, 0.18, 0.35], [0.9, 0.6, 0.7]]


def _flat(outline: np.ndarray, *, pad: int = 2):
    outline, h, w = canvas_for(outline, pad=pad)
    return outline, fill(outline, h, w), h, w


def plastic_bag(rng: np.random.Generator, size: float) -> Sprite:
    """A plastic bag: large, wrinkled, translucent (clear, white, coloured) or nearly opaque black."""
    outline = blob(rng, size / 2, size * rng.uniform(0.3, 0.5), irregularity=0.3, harmonics=4, n=96)
    if rng.random() < 0.4:  # two handle ears
        t = np.arctan2(outline[:, 1], outline[:, 0])
        a = rng.uniform(0.25, 0.45)
        ears = np.exp(-((t + np.pi / 2 - a) / 0.15) ** 2) + np.exp(-((t + np.pi / 2 + a) / 0.15) ** 2)
        outline = outline * (1 + 0.3 * ears)[:, None].astype(np.float32)
    outline = wobble(rng, outline, amount=size * 0.025, harmonics=14)
    outline, alpha, h, w = _flat(outline)
    color, (lo, hi) = _BAGS[int(rng.choice(len(_BAGS), p=_BAG_WEIGHTS))]
    color = np.clip(np.float32(color) + rng.uniform(-0.04, 0.04, 3), 0, 1)
    # crinkled film: ridged noise gives creases between facets; facets facing the light glint
    cells = rng.uniform(2.5, 4)
    height = -np.abs(noise(rng, h, w, cells=cells, octaves=4, persistence=0.5, stretch=rng.uniform(1.5, 3)))
    height += 0.6 * noise(rng, h, w, cells=cells / 2, octaves=2)
    shade = relief(height, strength=1.0) - 1
    shade *= np.float32(0.22 / max(float(shade.std()), 1e-6))
    sheen = np.clip(shade - 0.12, 0, None) * 3.0
    dark = np.clip(-shade - 0.2, 0, None)
    rgb = color * np.clip(1 + shade - dark, 0.3, 1.5)[..., None] + np.clip(sheen, 0, 0.7)[..., None]
    if rng.random() < 0.08:  # shop logo print
        x = np.linspace(-1, 1, w, dtype=np.float32)[None, :].repeat(h, 0)
        y = np.linspace(0, 1, h, dtype=np.float32)[:, None].repeat(w, 1)
        logo = (x ** 2 + ((y - 0.5) * 2) ** 2) < rng.uniform(0.03, 0.1)
        rgb[logo] = (pick(rng, PRINT_COLORS) * np.clip(1 + shade, 0.5, 1.3)[..., None])[logo]
    opacity = rng.uniform(lo, hi)
    opacity = np.clip(opacity + 0.5 * (1 - opacity) * (np.clip(sheen, 0, 1) + dark), 0, 1)
    return Sprite(np.clip(rgb, 0, 1), alpha * opacity, outline, height=0.35, shadow=0.2 + 0.6 * float(hi))


def _shirt(size: float) -> np.ndarray:
    pts = np.float32([[-0.12, 0], [-0.3, 0.04], [-0.5, 0.2], [-0.42, 0.36], [-0.3, 0.28], [-0.3, 1], [0.3, 1],
                      [0.3, 0.28], [0.42, 0.36], [0.5, 0.2], [0.3, 0.04], [0.12, 0], [0, 0.07]]) * size
    t = np.linspace(0, 1, 8, endpoint=False, dtype=np.float32)[:, None]
    return np.concatenate([a + t * (b - a) for a, b in zip(pts, np.roll(pts, -1, 0))])


def clothing(rng: np.random.Generator, size: float) -> Sprite:
    """Clothing: a shirt or a crumpled piece of fabric, woven texture, stripes or checks, soft folds."""
    if rng.random() < 0.4:
        outline = wobble(rng, _shirt(size), amount=size * 0.04)
    else:
        outline = wobble(rng, blob(rng, size / 2, size * rng.uniform(0.3, 0.45), irregularity=0.35, harmonics=5),
                         amount=size * 0.03)
    outline, alpha, h, w = _flat(outline)
    color = pick(rng, _FABRIC)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    pattern = rng.choice(["plain", "plain", "stripes", "checks"])
    rgb = np.broadcast_to(color, (h, w, 3)).copy()
    period = rng.uniform(6, 18) * max(size, 100) / 200
    if pattern != "plain":
        second = pick(rng, _FABRIC + [[0.95, 0.95, 0.95]])
        stripes = np.sin(y / period * np.pi) > 0.2
        if pattern == "checks":
            stripes = stripes ^ (np.sin(x / period * np.pi) > 0.2)
        rgb[stripes] = rgb[stripes] * 0.3 + second * 0.7
    f = rng.uniform(1.2, 2.0)  # weave: a fine grid of crossing threads
    weave = 0.05 * np.sin(x * f) * np.sin(y * f) + 0.05 * grain(rng, h, w, sigma=0.5)
    folds = noise(rng, h, w, cells=rng.uniform(2, 4), octaves=3, stretch=rng.uniform(1, 3))
    shade = relief(folds, strength=1.0) - 1
    shade *= np.float32(0.22 / max(float(shade.std()), 1e-6))
    creases = np.exp(-np.abs(noise(rng, h, w, cells=3, octaves=2, stretch=2)) * 10)
    rgb = rgb * np.clip(1 + shade + weave - 0.3 * creases, 0.3, 1.4)[..., None]
    return Sprite(np.clip(rgb, 0, 1), alpha, outline, height=0.3)


def plastic_tray(rng: np.random.Generator, size: float) -> Sprite:
    """A plastic food tray or clamshell: black or white, or clear and see-through with a rim."""
    outline = superellipse(size / 2, size * rng.uniform(0.3, 0.42), p=rng.uniform(3, 6), n=72)
    outline, alpha, h, w = _flat(outline)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rim = (np.minimum(np.minimum(x, w - 1 - x) / w, np.minimum(y, h - 1 - y) / h) < 0.08)
    shade = np.where(rim, 1.15, 0.95).astype(np.float32) * crumple(rng, h, w, cells=3, strength=0.3)
    kind = rng.integers(3)
    color = [np.float32([0.08, 0.08, 0.09]), np.float32([0.92, 0.92, 0.9]), np.float32([0.88, 0.92, 0.95])][kind]
    gloss = np.clip(shade - 1, 0, None) * 2
    rgb = color * shade[..., None] + gloss[..., None]
    opacity = 1.0 if kind < 2 else np.clip(0.3 + 0.5 * rim + gloss, 0, 1)
    return Sprite(np.clip(rgb, 0, 1), alpha * opacity, outline, height=0.4, shadow=1.0 if kind < 2 else 0.4)


def general_trash(rng: np.random.Generator, size: float) -> Sprite:
    """Mixed trash: snack wrappers (foil or printed film), paper cups, tissues, face masks, odd lumps."""
    kind = rng.choice(["wrapper", "wrapper", "cup", "tissue", "mask", "lump", "lump"])
    if kind == "cup":
        return paper_cup(rng, size)
    if kind == "wrapper":
        w, hh = size, size * rng.uniform(0.35, 0.6)
        n = 7
        zig = np.array([[(i % 2) * w * 0.04, hh * i / (n - 1)] for i in range(n)], np.float32)
        outline = np.concatenate([zig, [[w * 0.2, hh], [w * 0.8, hh]], (zig * [-1, 1] + [w, 0])[::-1],
                                  [[w * 0.8, 0], [w * 0.2, 0]]]).astype(np.float32)
        outline = wobble(rng, outline, amount=size * 0.02)
    elif kind == "mask":
        outline = superellipse(size / 2, size * 0.3, p=5, n=64)
    else:
        outline = wobble(rng, blob(rng, size / 2, size * rng.uniform(0.3, 0.5), irregularity=0.35, harmonics=5),
                         amount=size * 0.025)
    outline, alpha, h, w = _flat(outline)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "wrapper":
        foil = rng.random() < 0.5
        base = pick(rng, [[0.8, 0.8, 0.85], [0.85, 0.7, 0.3]]) if foil else pick(rng, PRINT_COLORS)
        rgb = print_design(rng, x / w * 2 - 1, y / h, base)
        shade = crumple(rng, h, w, cells=10, strength=3.0 if foil else 2.0)
        rgb = rgb * shade[..., None] + (np.clip(shade - 1.1, 0, None) * 3)[..., None]
    elif kind == "tissue":
        rgb = np.broadcast_to(pick(rng, [[0.97, 0.97, 0.96], [0.95, 0.93, 0.9]]), (h, w, 3)) * \
            (crumple(rng, h, w, cells=5, strength=0.8) * (1 + 0.03 * grain(rng, h, w, sigma=1)))[..., None]
    elif kind == "mask":
        color = pick(rng, [[0.6, 0.8, 0.95], [0.95, 0.95, 0.95], [0.15, 0.15, 0.17]])
        pleats = 1 - 0.15 * (np.sin(y / h * np.pi * 6) > 0.85)
        rgb = color * (pleats * crumple(rng, h, w, cells=4, strength=0.6))[..., None]
    else:
        color = pick(rng, [[0.55, 0.4, 0.25], [0.7, 0.6, 0.4], [0.3, 0.3, 0.3], [0.85, 0.5, 0.2], [0.6, 0.65, 0.4]])
        mottle = 1 + 0.18 * noise(rng, h, w, cells=6, octaves=3) + 0.08 * grain(rng, h, w, sigma=0.8)
        rgb = color * (mottle * crumple(rng, h, w, cells=5, strength=1.0))[..., None]
    return Sprite(np.clip(rgb, 0, 1), alpha, outline, height=0.4)
