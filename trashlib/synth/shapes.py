"""Outlines (smoothed random polygons, superellipses, solids of revolution), filling, clipping, sprites.

Outline points use OpenCV's convention (a pixel's centre is at integer coordinates); COCO puts
pixel centres at +0.5, so the scene adds 0.5 when it turns an outline into a segmentation.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SHIFT = 4  # fillPoly sub-pixel bits: outlines keep 1/16 px precision


@dataclass
class Sprite:
    """One rendered object in its own bounding box: colour, coverage and outline (sprite pixels)."""

    rgb: np.ndarray  # (h, w, 3) float32 in [0, 1]
    alpha: np.ndarray  # (h, w) float32 coverage times opacity
    outline: np.ndarray  # (N, 2) float32 x, y
    height: float = 1.0  # how far it stands off the floor: scales the drop shadow's offset
    shadow: float = 1.0  # how much light it blocks: scales the shadow's darkness

    def __post_init__(self):
        self.rgb = np.ascontiguousarray(self.rgb, np.float32)
        self.alpha = np.ascontiguousarray(self.alpha, np.float32)


def blob(rng: np.random.Generator, rx: float, ry: float, *, irregularity: float = 0.25,
         harmonics: int = 5, n: int = 72) -> np.ndarray:
    """A smooth random closed shape around the origin: an ellipse whose radius wobbles.

    Shape:
        returns: (n, 2) float32.
    """
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, harmonics + 2):
        r += irregularity / k * rng.standard_normal() * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.35, None)
    return np.stack([rx * r * np.cos(t), ry * r * np.sin(t)], 1).astype(np.float32)


def superellipse(rx: float, ry: float, *, p: float = 4.0, n: int = 64) -> np.ndarray:
    """|x/rx|^p + |y/ry|^p = 1 around the origin: p=2 ellipse, large p a rounded rectangle.

    Shape:
        returns: (n, 2) float32.
    """
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x, y = rx * np.sign(c) * np.abs(c) ** (2 / p), ry * np.sign(s) * np.abs(s) ** (2 / p)
    return np.stack([x, y], 1).astype(np.float32)


def wobble(rng: np.random.Generator, outline: np.ndarray, *, amount: float, harmonics: int = 8) -> np.ndarray:
    """Push outline points in and out along their radius by a smooth random amount (pixels).

    Shape:
        outline: (N, 2); returns: (N, 2) float32.
    """
    c = outline.mean(0)
    d = outline - c
    t = np.arctan2(d[:, 1], d[:, 0])
    r = np.zeros(len(outline))
    for k in range(3, harmonics + 3):
        r += rng.standard_normal() / np.sqrt(k) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    norm = np.linalg.norm(d, axis=1, keepdims=True) + 1e-6
    return (outline + d / norm * (amount * r / 2)[:, None]).astype(np.float32)


def revolve_outline(radius: np.ndarray, cx: float, *, step: int = 3) -> np.ndarray:
    """Side-view outline of a solid of revolution whose axis is the column `cx`.

    `radius[y]` is the half-width at row y; the outline runs down the right side and up the left.

    Shape:
        radius: (L,); returns: (M, 2) float32.
    """
    rows = np.unique(np.r_[np.arange(0, len(radius), step), len(radius) - 1])
    r = radius[rows]
    right = np.stack([cx + r, rows], 1)
    left = np.stack([cx - r, rows], 1)[::-1]
    return np.concatenate([right, left]).astype(np.float32)


def fill(outline: np.ndarray, h: int, w: int, *, offset=(0.0, 0.0)) -> np.ndarray:
    """Anti-aliased coverage of a polygon, in [0, 1].

    Shape:
        outline: (N, 2) x, y; returns: (h, w) float32.
    """
    canvas = np.zeros((h, w), np.uint8)
    pts = np.round((outline + np.asarray(offset, np.float32)) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
    return canvas.astype(np.float32) * np.float32(1 / 255)


def canvas_for(outline: np.ndarray, *, pad: int = 2):
    """Translate an outline so its bounding box starts at `pad`; returns (outline, h, w)."""
    lo = outline.min(0)
    out = (outline - lo + pad).astype(np.float32)
    hi = out.max(0)
    return out, int(np.ceil(hi[1])) + pad + 1, int(np.ceil(hi[0])) + pad + 1


def rotate(sprite: Sprite, angle_deg: float, *, pad: int = 0) -> Sprite:
    """Rotate a sprite about its centre into a new bounding box (plus `pad` empty pixels each side)."""
    h, w = sprite.alpha.shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle_deg, 1.0)
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64) @ m.T
    lo = corners.min(0)
    m[:, 2] += pad - lo
    nw, nh = (int(np.ceil(corners[:, k].max() - lo[k])) + 2 * pad + 1 for k in (0, 1))
    # one 4-channel warp is ~5x faster than rgb and alpha apart; the black border only meets alpha 0 (padding)
    rgba = cv2.warpAffine(cv2.merge([sprite.rgb, sprite.alpha]), m, (nw, nh), flags=cv2.INTER_LINEAR)
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    outline = (np.c_[sprite.outline, np.ones(len(sprite.outline))] @ m.T).astype(np.float32)
    return Sprite(rgb, alpha, outline, sprite.height, sprite.shadow)


def clip_polygon(poly: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon to the square [lo, hi]^2 (may return < 3 points).

    Shape:
        poly: (N, 2); returns: (M, 2) float64.
    """
    poly = np.asarray(poly, np.float64)
    if len(poly) and poly.min() >= lo and poly.max() <= hi:
        return poly.reshape(-1, 2)
    pts = [tuple(p) for p in poly]
    for axis, bound, keep_below in ((0, lo, False), (0, hi, True), (1, lo, False), (1, hi, True)):
        if not pts:
            break
        inside = (lambda p: p[axis] <= bound) if keep_below else (lambda p: p[axis] >= bound)
        out = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            if inside(cur) != inside(prev):
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(tuple(prev[k] + t * (cur[k] - prev[k]) if k != axis else bound for k in (0, 1)))
            if inside(cur):
                out.append(cur)
        pts = out
    return np.array(pts, np.float64).reshape(-1, 2)


def simplify(poly: np.ndarray, *, epsilon: float = 0.6) -> np.ndarray:
    """Drop near-collinear points (Douglas-Peucker, `epsilon` px) to keep annotations small.

    Shape:
        poly: (N, 2); returns: (M, 2) float64.
    """
    approx = cv2.approxPolyDP(np.asarray(poly, np.float32).reshape(-1, 1, 2), epsilon, True)
    return approx.reshape(-1, 2).astype(np.float64)
