"""Procedural textures: fractal noise, floor backgrounds, lighting and camera finish (float32 RGB in [0, 1])."""
from __future__ import annotations

import cv2
import numpy as np


def noise(rng: np.random.Generator, h: int, w: int, *, cells: float = 4.0, octaves: int = 4,
          persistence: float = 0.5, stretch: float = 1.0, _full: bool = False) -> np.ndarray:
    """Fractal value noise: random grids upsampled bicubically and summed; zero mean, about unit std.

    `cells` is the number of grid cells across the larger side at the first octave; `stretch` > 1
    makes features longer along x (wood grain, fabric folds, bag wrinkles).

    Shape:
        returns: (h, w) float32.
    """
    if max(h, w) > 96 and not _full:  # the finest octave spans pixels: sum at half size, upsample once
        half = noise(rng, (h + 1) // 2, (w + 1) // 2, cells=cells, octaves=octaves, persistence=persistence,
                     stretch=stretch, _full=True)
        return cv2.resize(half, (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    side = max(h, w)
    for o in range(octaves):
        c = cells * 2 ** o
        gh = max(2, int(np.ceil(c * h / side)) + 1)
        gw = max(2, int(np.ceil(c * w / side / stretch)) + 1)
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp * amp
        amp *= persistence
    return out / np.float32(np.sqrt(total))


def grain(rng: np.random.Generator, h: int, w: int, *, sigma: float = 0.0) -> np.ndarray:
    """Per-pixel white noise, optionally blurred (sand, carpet fibres, foam beads); unit-ish std.

    Shape:
        returns: (h, w) float32.
    """
    g = (rng.random((h, w), dtype=np.float32) - np.float32(0.5)) * np.float32(np.sqrt(12))  # uniform: 3x faster
    if sigma > 0:
        g = cv2.GaussianBlur(g, (0, 0), sigma)
        g /= max(float(g.std()), 1e-6)
    return g


def tint(gray: np.ndarray, color) -> np.ndarray:
    """Multiply a (h, w) intensity field by an RGB colour.

    Shape:
        gray: (h, w); returns: (h, w, 3) float32.
    """
    gray = np.asarray(gray, np.float32)
    return cv2.merge([gray * np.float32(c) for c in color])  # faster than numpy broadcasting over 3


def _jitter(rng, color, amount=0.06):
    return np.clip(np.asarray(color, np.float32) + rng.uniform(-amount, amount, 3), 0, 1)


def _concrete(rng, n):
    base = _jitter(rng, rng.choice([[0.58, 0.57, 0.55], [0.66, 0.64, 0.6], [0.5, 0.5, 0.5]]), 0.05)
    f = 1 + 0.1 * noise(rng, n, n, cells=3) + 0.06 * grain(rng, n, n, sigma=0.7)
    stains = np.clip(noise(rng, n, n, cells=2, octaves=3) - 0.8, 0, None)
    return tint(f - 0.25 * stains, base)


def _asphalt(rng, n):
    base = _jitter(rng, [0.27, 0.27, 0.28], 0.04)
    f = 1 + 0.12 * noise(rng, n, n, cells=4) + 0.22 * grain(rng, n, n, sigma=0.8)
    pebbles = np.clip(grain(rng, n, n, sigma=1.2) - 2.2, 0, None)
    return tint(f + 0.8 * pebbles, base)


def _wood(rng, n):
    width = int(rng.integers(n // 8, n // 3))
    hue = _jitter(rng, rng.choice([[0.62, 0.42, 0.25], [0.5, 0.32, 0.18], [0.75, 0.6, 0.42]]), 0.05)
    rows = np.arange(n)[:, None] // width
    plank = rng.uniform(0.85, 1.15, int(rows.max()) + 1).astype(np.float32)[rows]
    streak = noise(rng, n, n, cells=6, octaves=3, stretch=12)
    rings = 0.5 + 0.5 * np.sin(30 * noise(rng, n, n, cells=1.5, octaves=2, stretch=6) + streak)
    gaps = (np.arange(n)[:, None] % width < 2).astype(np.float32)
    f = plank * (1 + 0.08 * streak - 0.1 * rings) * (1 - 0.5 * gaps) + 0.03 * grain(rng, n, n)
    img = tint(np.broadcast_to(f, (n, n)).astype(np.float32), hue)
    return img.transpose(1, 0, 2).copy() if rng.random() < 0.5 else img


def _tiles(rng, n):
    size = int(rng.integers(n // 8, n // 3))
    base = _jitter(rng, rng.choice([[0.85, 0.84, 0.8], [0.7, 0.72, 0.74], [0.75, 0.62, 0.52]]), 0.05)
    y, x = np.mgrid[0:n, 0:n]
    ox, oy = rng.integers(0, size, 2)
    cell = ((y + oy) // size) * 1000 + (x + ox) // size
    shade = rng.uniform(0.93, 1.05, int(cell.max()) + 1).astype(np.float32)[cell]
    grout = (((x + ox) % size < 3) | ((y + oy) % size < 3)).astype(np.float32)
    f = shade * (1 + 0.04 * noise(rng, n, n, cells=3) + 0.02 * grain(rng, n, n))
    img = tint(f, base) * (1 - grout[..., None]) + tint(0.9 + 0.05 * grain(rng, n, n), base * 0.6) * grout[..., None]
    return img


def _cardboard(rng, n):
    base = _jitter(rng, [0.6, 0.45, 0.3], 0.04)
    fibres = grain(rng, n, n, sigma=0.7) * 0.05 + 0.03 * noise(rng, n, n, cells=40, octaves=2, stretch=6)
    corrugation = 0.025 * np.sin(np.arange(n, dtype=np.float32) * rng.uniform(0.6, 1.0))[None, :]
    f = 1 + 0.06 * noise(rng, n, n, cells=4) + fibres + corrugation
    return tint(f, base)


def _carpet(rng, n):
    colors = [[0.33, 0.31, 0.4], [0.4, 0.38, 0.35], [0.25, 0.33, 0.3], [0.45, 0.27, 0.24], [0.2, 0.22, 0.3]]
    base = _jitter(rng, rng.choice(colors), 0.05)
    f = 1 + 0.25 * grain(rng, n, n, sigma=0.6) + 0.12 * noise(rng, n, n, cells=5, octaves=3)
    return tint(f, base)


BACKGROUNDS = {"concrete": _concrete, "asphalt": _asphalt, "wood": _wood, "tiles": _tiles,
               "cardboard": _cardboard, "carpet": _carpet}


def background(rng: np.random.Generator, size: int, *, kind: str | None = None) -> np.ndarray:
    """A textured floor: concrete, asphalt, wood planks, tiles, cardboard or carpet.

    Shape:
        returns: (size, size, 3) float32 in [0, 1].
    """
    kind = kind or str(rng.choice(list(BACKGROUNDS)))
    if kind not in BACKGROUNDS:
        raise KeyError(f"unknown background {kind!r}; valid: {', '.join(BACKGROUNDS)}")
    return np.clip(BACKGROUNDS[kind](rng, size), 0, 1).astype(np.float32)


def lighting(rng: np.random.Generator, size: int, *, angle: float) -> np.ndarray:
    """Multiplicative light field: directional gradient from `angle`, vignette, colour temperature.

    Shape:
        returns: (size, size, 3) float32.
    """
    n = 64  # the field is smooth: compute it coarse and upsample
    t = np.linspace(-1, 1, n, dtype=np.float32)
    x, y = t[None, :], t[:, None]
    directional = 1 + rng.uniform(0.08, 0.3) * -(x * np.cos(angle) + y * np.sin(angle)) / 1.4
    vignette = 1 - rng.uniform(0.1, 0.35) * (x * x + y * y) / 2
    temp = rng.uniform(-0.08, 0.1)
    color = np.array([1 + temp, 1 + 0.2 * temp, 1 - temp], np.float32) * np.float32(rng.uniform(0.85, 1.12))
    field = (directional * vignette).astype(np.float32)[..., None] * color
    return cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR)


def finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera look: slight blur (sometimes motion), sensor noise, gamma; float RGB to uint8.

    Shape:
        image: (H, W, 3) float32; returns: (H, W, 3) uint8.
    """
    if rng.random() < 0.15:
        k = int(rng.integers(3, 7))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1 / k
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(rng.uniform(0, 180)), 1)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        image = cv2.filter2D(image, -1, kernel / kernel.sum())
    else:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.4, 1.1)))
    sensor = grain(rng, *image.shape[:2]) * np.float32(rng.uniform(0.005, 0.02))
    image = cv2.add(image, cv2.merge([sensor, sensor, sensor]))
    out = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    gamma = np.float32(rng.uniform(0.9, 1.1))
    lut = np.clip((np.arange(256, dtype=np.float32) / 255) ** gamma * 255 + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(out, lut)
