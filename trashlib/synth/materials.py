"""Surface decoration and shading shared by the object renderers: print, relief, cylinder light."""
from __future__ import annotations

import cv2
import numpy as np

from trashlib.synth.textures import noise

# Saturated print colours of packaging (labels, cartons, cans, wrappers).
PRINT_COLORS = np.array([
    [0.8, 0.1, 0.1], [0.1, 0.25, 0.7], [0.1, 0.55, 0.2], [0.95, 0.75, 0.1], [0.95, 0.45, 0.05],
    [0.55, 0.1, 0.5], [0.05, 0.05, 0.08], [0.9, 0.9, 0.9], [0.2, 0.6, 0.85], [0.85, 0.3, 0.5],
], np.float32)


def pick(rng: np.random.Generator, colors, *, jitter: float = 0.05) -> np.ndarray:
    """One colour from a list, slightly jittered; (3,) float32."""
    c = np.asarray(colors, np.float32)[int(rng.integers(len(colors)))]
    return np.clip(c + rng.uniform(-jitter, jitter, 3), 0, 1).astype(np.float32)


def text_lines(rng: np.random.Generator, h: int, w: int, *, spacing: float, margin: float = 0.1,
               thickness: int = 2, columns: int = 1) -> np.ndarray:
    """Coverage of printed text: rows of word-like dashes inside margins, in `columns` columns.

    Shape:
        returns: (h, w) float32 in [0, 1].
    """
    out = np.zeros((h, w), np.uint8)
    mx, my = int(w * margin), int(h * margin)
    col_w = (w - 2 * mx) / columns
    for c in range(columns):
        x0, x1 = int(mx + c * col_w + 2), int(mx + (c + 1) * col_w - 2)
        y = my + spacing / 2
        while y < h - my and x1 - x0 > 6:
            x = x0
            end = x1 if rng.random() > 0.15 else x0 + int((x1 - x0) * rng.uniform(0.3, 0.8))
            while x < end:
                word = int(rng.integers(3, 9) * spacing * 0.35)
                cv2.rectangle(out, (x, int(y)), (min(x + word, end), int(y) + thickness - 1), 255, -1)
                x += word + max(2, int(spacing * 0.3))
            y += spacing * (2.2 if rng.random() < 0.08 else 1.0)
    return cv2.GaussianBlur(out, (3, 3), 0.6).astype(np.float32) * np.float32(1 / 255)


def relief(height: np.ndarray, *, strength: float, angle: float = -2.3) -> np.ndarray:
    """Lambert-like shading of a height field lit from `angle` (radians); 1 is flat.

    Shape:
        height: (h, w) float32; returns: (h, w) float32.
    """
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3)
    return 1 + strength * (gx * np.float32(np.cos(angle)) + gy * np.float32(np.sin(angle)))


def crumple(rng: np.random.Generator, h: int, w: int, *, cells: float = 6, strength: float = 1.0) -> np.ndarray:
    """Shading of crumpled sheet material: ridged noise (sharp creases between facets), lit.

    Shape:
        returns: (h, w) float32 around 1.
    """
    ridges = -np.abs(noise(rng, h, w, cells=cells, octaves=3, persistence=0.55))
    ridges += 0.5 * noise(rng, h, w, cells=cells / 2, octaves=2)
    shade = relief(ridges, strength=1.0)- 1
    shade *= np.float32(0.18 * strength / max(float(shade.std()), 1e-6))
    return np.clip(1 + shade, 0.45, 1.35)


def cylinder(u: np.ndarray, *, u0: float = -0.45, gloss: float = 0.5,
             width: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse and specular terms across a cylinder; `u` in [-1, 1] from edge to edge.

    Shape:
        u: (h, w); returns: (diffuse, specular), each (h, w) float32.
    """
    nz = np.sqrt(np.clip(1 - u * u, 0, 1))
    diffuse = 0.3 + 0.7 * np.clip(0.85 * nz - 0.35 * u, 0, 1)
    spec = gloss * np.exp(-((u - u0) / width) ** 2) + 0.35 * gloss * np.exp(-((u - 0.6) / (2 * width)) ** 2)
    return diffuse.astype(np.float32), spec.astype(np.float32)


def metal_bands(rng: np.random.Generator, u: np.ndarray) -> np.ndarray:
    """Environment reflections of polished metal: high-contrast bands along the cylinder axis.

    Shape:
        u: (h, w); returns: (h, w) float32 in about [0.15, 1.3].
    """
    env = np.full(u.shape, 0.55, np.float32)
    for _ in range(int(rng.integers(3, 6))):
        c, s, a = rng.uniform(-0.9, 0.9), rng.uniform(0.05, 0.2), rng.uniform(-0.45, 0.6)
        env += np.float32(a) * np.exp(-((u - c) / s) ** 2).astype(np.float32)
    return np.clip(env * (1 - 0.5 * np.abs(u) ** 3), 0.12, 1.3)


def print_design(rng: np.random.Generator, s: np.ndarray, v: np.ndarray, base) -> np.ndarray:
    """A packaging print in (s, v) surface coordinates: base colour, a band or stripe, a logo disc.

    Shape:
        s, v: (h, w) in about [-1, 1] x [0, 1]; returns: (h, w, 3) float32.
    """
    img = np.broadcast_to(np.asarray(base, np.float32), s.shape + (3,)).copy()
    kind = rng.integers(3)
    c2 = pick(rng, PRINT_COLORS)
    if kind == 0:  # horizontal band
        a, b = sorted(rng.uniform(0.15, 0.9, 2))
        img[(v > a) & (v < b)] = c2
    elif kind == 1:  # diagonal stripe
        d = v + rng.uniform(-0.6, 0.6) * s
        c = rng.uniform(0.2, 0.8)
        img[np.abs(d - c) < rng.uniform(0.06, 0.2)] = c2
    else:  # split colour
        img[v > rng.uniform(0.3, 0.7)] = c2
    cx, cy, r = rng.uniform(-0.4, 0.4), rng.uniform(0.25, 0.75), rng.uniform(0.15, 0.35)
    img[(s - cx) ** 2 + ((v - cy) * 2.2) ** 2 < r * r] = pick(rng, PRINT_COLORS)
    return img
