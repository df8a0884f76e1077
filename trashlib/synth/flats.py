"""Flat, stiff objects seen from above: paper sheets, newspaper, cardboard, cartons, styrofoam, tins.

Each renderer takes the object's long side in pixels and returns a `Sprite` the scene rotates.
"""
from __future__ import annotations

import cv2
import numpy as np

from trashlib.synth.materials import PRINT_COLORS, crumple, metal_bands, pick, print_design, relief, text_lines
from trashlib.synth.shapes import Sprite, blob, canvas_for, fill, superellipse, wobble
from trashlib.synth.textures import grain, noise

_PAPER = [[0.96, 0.96, 0.94], [0.93, 0.93, 0.9], [0.95, 0.92, 0.8], [0.85, 0.9, 0.95], [0.97, 0.85, 0.88]]
_INK = [[0.1, 0.1, 0.12], [0.2, 0.2, 0.25], [0.1, 0.15, 0.45], [0.35, 0.35, 0.35]]
_CARDBOARD = [[0.68, 0.52, 0.34], [0.6, 0.44, 0.28], [0.75, 0.6, 0.42]]


def _flat(outline: np.ndarray, *, pad: int = 2):
    outline, h, w = canvas_for(outline, pad=pad)
    return outline, fill(outline, h, w), h, w


def _quad(rng, w: float, h: float, *, jitter: float) -> np.ndarray:
    """A rectangle with corners pushed around (perspective, torn edges), densified for wobbling."""
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    corners += rng.uniform(-jitter, jitter, (4, 2)).astype(np.float32) * max(w, h)
    t = np.linspace(0, 1, 12, endpoint=False, dtype=np.float32)[:, None]
    return np.concatenate([a + t * (b - a) for a, b in zip(corners, np.roll(corners, -1, 0))])


def _grid(h: int, w: int):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return x / max(w - 1, 1), y / max(h - 1, 1)


def paper(rng: np.random.Generator, size: float) -> Sprite:
    """Paper: printed sheets (flat, folded or crumpled), newspaper, or a piece of cardboard."""
    kind = rng.choice(["sheet", "sheet", "crumpled", "crumpled", "newspaper", "cardboard"])
    if kind == "crumpled":
        outline = wobble(rng, blob(rng, size / 2, size * rng.uniform(0.3, 0.45), irregularity=0.3, harmonics=6),
                         amount=size * 0.03)
    else:
        aspect = rng.uniform(1.2, 1.5) if kind != "cardboard" else rng.uniform(1.0, 2.0)
        outline = _quad(rng, size / aspect, size, jitter=0.05 if kind != "cardboard" else 0.12)
        outline = wobble(rng, outline, amount=size * (0.015 if kind != "cardboard" else 0.005))
    outline, alpha, h, w = _flat(outline)
    colors = {"cardboard": _CARDBOARD, "newspaper": [[0.82, 0.8, 0.74]]}.get(kind, _PAPER)
    base = pick(rng, colors, jitter=0.03)
    spacing = max(4.0, size * rng.uniform(0.025, 0.045))
    if kind == "cardboard":
        x, y = _grid(h, w)
        flutes = 0.04 * np.sin(x * w / rng.uniform(3, 5) * 2 * np.pi)
        f = 1 + flutes + 0.06 * noise(rng, h, w, cells=20, octaves=2, stretch=4)
        rgb = base * f[..., None]
        if rng.random() < 0.6:  # packing tape
            c = rng.uniform(0.3, 0.7)
            band = np.abs(y - c) < rng.uniform(0.06, 0.12)
            rgb[band] = rgb[band] * 0.8 + np.float32([0.75, 0.62, 0.4]) * 0.25
        ink = text_lines(rng, h, w, spacing=spacing * 2, margin=0.3, thickness=3) * 0.6
        rgb = rgb * (1 - ink[..., None]) + ink[..., None] * np.float32([0.15, 0.12, 0.1])
        bend = relief(noise(rng, h, w, cells=2, octaves=2), strength=1.0) - 1  # gently warped board
        shade = 1 + bend * np.float32(0.08 / max(float(bend.std()), 1e-6))
    else:
        cols = int(rng.integers(3, 5)) if kind == "newspaper" else 1
        ink = text_lines(rng, h, w, spacing=spacing, margin=rng.uniform(0.08, 0.15), columns=cols,
                         thickness=max(1, int(spacing * 0.3))) * rng.uniform(0.5, 0.85)
        rgb = base * (1 - ink)[..., None] + pick(rng, _INK)[None, None, :] * ink[..., None]
        if kind == "newspaper" or rng.random() < 0.25:  # photo or figure block
            x0, y0 = int(w * rng.uniform(0.1, 0.5)), int(h * rng.uniform(0.1, 0.6))
            bw, bh = int(w * rng.uniform(0.2, 0.4)), int(h * rng.uniform(0.15, 0.3))
            block = 0.5 + 0.2 * noise(rng, bh, bw, cells=3)[..., None] * pick(rng, PRINT_COLORS)
            target = rgb[y0:y0 + bh, x0:x0 + bw]
            target[:] = block[:target.shape[0], :target.shape[1]]
        shade = crumple(rng, h, w, cells=rng.uniform(4, 8), strength=1.8 if kind == "crumpled" else 0.35)
        if kind == "sheet" and rng.random() < 0.4:  # a fold crease: one half tilted away from the light
            x, y = _grid(h, w)
            side = (x - 0.5) * rng.uniform(-1, 1) + (y - 0.5) * rng.uniform(-1, 1) > 0
            shade = shade * np.where(side, 0.86, 1.0).astype(np.float32)
    return Sprite(np.clip(rgb * shade[..., None], 0, 1), alpha, outline,
                  height=0.5 if kind == "crumpled" else 0.12)


def carton(rng: np.random.Generator, size: float) -> Sprite:
    """Paper pack: a gable-top milk carton, a juice brick, or a flattened printed carton."""
    kind = rng.choice(["gable", "gable", "brick", "flat"])
    hh = size
    ww = size * (rng.uniform(0.38, 0.5) if kind == "gable" else rng.uniform(0.5, 0.7))
    if kind == "gable":
        gable = [[0.06, 0], [0.94, 0], [0.94, 0.06], [1, 0.2], [1, 1], [0, 1], [0, 0.2], [0.06, 0.06]]
        outline = np.float32(gable) * np.float32([ww, hh])
    else:
        outline = _quad(rng, ww, hh, jitter=0.02)
    outline, alpha, h, w = _flat(outline)
    x, y = _grid(h, w)
    base = pick(rng, [[0.96, 0.96, 0.94], [0.95, 0.92, 0.85], [0.98, 0.85, 0.3], [0.3, 0.55, 0.85], [0.9, 0.35, 0.3]])
    rgb = print_design(rng, (x - 0.5) * 2, y, base)
    if rng.random() < 0.8:  # product picture: a big coloured disc with a highlight
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.45, 0.75), rng.uniform(0.12, 0.22)
        d = ((x - cx) * w) ** 2 + ((y - cy) * h) ** 2 < (r * w) ** 2
        rgb[d] = pick(rng, PRINT_COLORS) * (0.8 + 0.3 * (y[d] < cy))[:, None]
    ink = text_lines(rng, h, w, spacing=max(4.0, size * 0.035), margin=0.15) * (y > 0.75)
    rgb = rgb * (1 - 0.8 * ink[..., None])
    if kind == "flat":
        shade = np.ones((h, w), np.float32)
        for _ in range(int(rng.integers(1, 3))):  # fold lines of the flattened box
            c = rng.uniform(0.25, 0.75)
            shade[np.abs(x - c) < 0.01] = 0.6
        shade *= crumple(rng, h, w, cells=5, strength=0.5)
    else:
        split = rng.uniform(0.45, 0.65)  # two faces of a box: one lit, one in shade
        shade = np.where(x < split, 1.0, rng.uniform(0.62, 0.8)).astype(np.float32)
        shade[np.abs(x - split) < 0.008] *= 1.15
        if kind == "gable":
            shade[y < 0.2] *= 0.82
            if rng.random() < 0.4:  # plastic spout cap on the roof
                cx, cy, r = int(w * 0.3), int(h * 0.13), max(2, int(w * 0.09))
                cv2.circle(rgb, (cx, cy), r, tuple(float(c) for c in pick(rng, PRINT_COLORS)), -1)
    return Sprite(np.clip(rgb * shade[..., None], 0, 1), alpha, outline, height=0.9 if kind != "flat" else 0.15)


def _beads(rng, h: int, w: int, size: float) -> np.ndarray:
    """Expanded-polystyrene surface: bumpy bead cells plus sparse dark specks."""
    bead = grain(rng, h, w, sigma=max(0.8, size / 180))
    specks = (rng.random((h, w)) < 0.004).astype(np.float32)
    return 1 + 0.05 * bead - 0.25 * cv2.GaussianBlur(specks, (3, 3), 0.6) * 4


def styrofoam(rng: np.random.Generator, size: float) -> Sprite:
    """White styrofoam: a food tray with a raised rim, a chipped packing block, or a small chunk."""
    kind = rng.choice(["tray", "tray", "block", "block", "chunk"])
    white = pick(rng, [[0.95, 0.95, 0.93], [0.93, 0.94, 0.95], [0.96, 0.94, 0.88]], jitter=0.02)
    if kind == "tray":
        outline = superellipse(size / 2, size * rng.uniform(0.28, 0.42), p=rng.uniform(4, 8), n=80)
        outline, alpha, h, w = _flat(outline)
        d = cv2.distanceTransform((alpha > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
        rim = size * rng.uniform(0.06, 0.1)
        shade = np.where(d < rim, 1.05, 0.9).astype(np.float32)
        shade -= 0.18 * np.exp(-((d - rim) / 2.0) ** 2)
        shade += 0.12 * np.exp(-((d - rim * 0.5) / (rim * 0.3)) ** 2)
    else:
        r = size / 2 if kind == "block" else size / 3
        if rng.random() < 0.5:  # a packing block: a rough rectangle
            pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [r, r * rng.uniform(0.35, 0.8)]
            pts = pts + rng.normal(0, 0.06 * r, (4, 2))
        else:  # a broken-off chunk
            pts = rng.normal(0, 1, (12, 2)) * [r, r * rng.uniform(0.5, 0.9)]
        top = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)
        # a slab seen from above at a slant: the top face plus the side face the extrusion shows
        a = rng.uniform(0, 2 * np.pi)
        depth = size * rng.uniform(0.05, 0.15) * np.array([np.cos(a), np.sin(a)], np.float32)
        hull = cv2.convexHull(np.concatenate([top, top + depth]).astype(np.float32)).reshape(-1, 2)
        dense = np.concatenate([p + np.linspace(0, 1, 6, endpoint=False)[:, None] * (q - p)
                                for p, q in zip(hull, np.roll(hull, -1, 0))])
        chipped = wobble(rng, dense, amount=size * 0.01)
        outline, alpha, h, w = _flat(chipped)
        face = fill(top + (outline[0] - chipped[0]), h, w)
        shade = 0.72 + 0.3 * face
        x, y = _grid(h, w)
        side = (x - rng.uniform(0.3, 0.7)) * rng.uniform(-1, 1) + (y - rng.uniform(0.3, 0.7)) * rng.uniform(-1, 1) > 0
        shade *= np.where(side & (face > 0.5), rng.uniform(0.85, 0.95), 1.0).astype(np.float32)  # a broken facet
    shade = shade * _beads(rng, h, w, size) * (1 + 0.04 * noise(rng, h, w, cells=3))
    return Sprite(np.clip(white * shade[..., None], 0, 1), alpha, outline, height=0.5)


def tin(rng: np.random.Generator, size: float) -> Sprite:
    """Metal seen from above: a food-tin lid or can end with concentric rings, or a foil tray."""
    if rng.random() < 0.6:
        outline = superellipse(size / 2, size / 2, p=2, n=64)
        outline, alpha, h, w = _flat(outline)
        x, y = _grid(h, w)
        r = np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2) * 2
        shade = 0.7 + 0.25 * np.cos(r * rng.uniform(12, 25)) * (r > 0.6) + 0.2 * (1 - x - y)
        color = pick(rng, [[0.8, 0.8, 0.82], [0.85, 0.72, 0.4]])
    else:
        outline = superellipse(size / 2, size * rng.uniform(0.3, 0.4), p=6, n=64)
        outline, alpha, h, w = _flat(outline)
        u = np.broadcast_to(np.linspace(-1, 1, w, dtype=np.float32)[None, :], (h, w))
        shade = metal_bands(rng, u) * crumple(rng, h, w, cells=8, strength=2.5)
        color = np.float32([0.82, 0.82, 0.85])
    rgb = color * np.clip(shade, 0.1, 1.4)[..., None]
    return Sprite(np.clip(rgb, 0, 1), alpha, outline, height=0.3)
