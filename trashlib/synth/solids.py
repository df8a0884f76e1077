"""Round objects seen from the side (cans, bottles, jars, cups, batteries), shaded as solids of revolution.

Each renderer takes the object's length in pixels and returns an upright `Sprite` (axis vertical,
top at row 0); the scene rotates it.
"""
from __future__ import annotations

import numpy as np

from trashlib.synth.materials import PRINT_COLORS, crumple, cylinder, metal_bands, pick, print_design
from trashlib.synth.shapes import Sprite, fill, revolve_outline
from trashlib.synth.textures import noise

_GLASS_TINTS = [[0.16, 0.46, 0.2], [0.42, 0.23, 0.07], [0.82, 0.88, 0.86], [0.12, 0.3, 0.55]]
_PET_TINTS = [[0.86, 0.92, 0.96], [0.72, 0.86, 0.96], [0.58, 0.8, 0.6], [0.5, 0.3, 0.12]]
_CAN_COLORS = [[0.78, 0.78, 0.8], [0.75, 0.08, 0.1], [0.1, 0.2, 0.6], [0.1, 0.45, 0.2],
               [0.08, 0.08, 0.1], [0.85, 0.7, 0.2], [0.9, 0.9, 0.92]]
_SILVER = np.float32([0.8, 0.8, 0.82])


def _solid(radius: np.ndarray, *, pad: int = 2):
    """Outline, coverage and surface coordinates (u across in [-1, 1], v down in [0, 1]) of a profile."""
    length, r_max = len(radius), float(radius.max())
    w, h = int(np.ceil(2 * r_max)) + 2 * pad + 1, length + 2 * pad
    cx = (w - 1) / 2
    outline = revolve_outline(radius, cx) + np.float32([0, pad])
    alpha = fill(outline, h, w)
    r = np.maximum(radius[np.clip(np.arange(h) - pad, 0, length - 1)], 0.5)[:, None]
    u = np.clip((np.arange(w, dtype=np.float32)[None, :] - cx) / r, -1, 1).astype(np.float32)
    v = np.broadcast_to(((np.arange(h) - pad) / length).astype(np.float32)[:, None], (h, w))
    return outline, alpha, u, v


def _profile(length: int, knots_y, knots_r) -> np.ndarray:
    return np.interp(np.arange(length) / length, knots_y, knots_r).astype(np.float32)


def _dent(rng, radius: np.ndarray, amount: float) -> np.ndarray:
    bumps = noise(rng, len(radius), 1, cells=6, octaves=2)[:, 0]
    return radius * (1 + amount * bumps)


def can(rng: np.random.Generator, size: float) -> Sprite:
    """A drink can: printed aluminium with reflection bands and a specular streak; sometimes crushed."""
    length = int(size)
    r = length * rng.uniform(0.24, 0.33)
    radius = _profile(length, [0, 0.07, 0.11, 0.93, 1], [0.84 * r, 0.86 * r, r, r, 0.88 * r])
    crushed = rng.random() < 0.3
    if crushed:
        radius = _dent(rng, radius, 0.18)
    outline, alpha, u, v = _solid(radius)
    s = np.arcsin(u) / np.float32(np.pi / 2)
    design = print_design(rng, s, v, pick(rng, _CAN_COLORS))
    rim = (v < 0.1) | (v > 0.93)
    design[rim] = _SILVER
    diffuse, spec = cylinder(u, u0=rng.uniform(-0.6, -0.3), gloss=0.9, width=0.05)
    env = metal_bands(rng, u)
    shade = 0.35 * diffuse + 0.7 * env
    if crushed:
        shade = shade * crumple(rng, *u.shape, cells=5, strength=1.5)
    rgb = design * shade[..., None] + spec[..., None]
    rgb[np.abs(v - 0.105) < 0.01] *= 0.5  # seam between lid and body
    return Sprite(np.clip(rgb, 0, 1), alpha, outline, height=0.8)


def _bottle_profile(rng, length: int, *, body: float, neck: float, shoulder: float, lip: float = 1.15):
    """Half-widths of a bottle: lip, neck, shoulder curve, body, rounded base."""
    y = np.arange(length) / length
    t = np.clip((y - shoulder[0]) / (shoulder[1] - shoulder[0]), 0, 1)
    r = neck + (body - neck) * (3 * t * t - 2 * t ** 3)
    r = np.where(y < 0.03, neck * lip, r)
    r = np.where(y > 0.97, body * (1 - 0.1 * (y - 0.97) / 0.03), r)
    return r.astype(np.float32)


def glass_bottle(rng: np.random.Generator, size: float) -> Sprite:
    """A glass bottle or jar: tinted, see-through, darker thick edges, sharp highlights, label, cap."""
    length = int(size)
    kind = rng.choice(["bottle", "bottle", "jar"])
    if kind == "jar":
        body = length * rng.uniform(0.32, 0.42)
        radius = _bottle_profile(rng, length, body=body, neck=0.82 * body, shoulder=(0.1, 0.2), lip=1.05)
    else:
        body = length * rng.uniform(0.12, 0.17)
        a = rng.uniform(0.2, 0.35)
        radius = _bottle_profile(rng, length, body=body, neck=body * rng.uniform(0.32, 0.42),
                                 shoulder=(a, a + rng.uniform(0.12, 0.22)))
    outline, alpha, u, v = _solid(radius)
    tint = pick(rng, _GLASS_TINTS, jitter=0.04)
    clear = tint.min() > 0.7
    a0 = rng.uniform(0.3, 0.45) if clear else rng.uniform(0.55, 0.78)
    diffuse, spec = cylinder(u, u0=rng.uniform(-0.65, -0.35), gloss=1.0, width=0.05)
    edge = np.abs(u) ** 4
    rgb = tint * (0.55 + 0.45 * diffuse)[..., None] * (1 - 0.45 * edge)[..., None] + spec[..., None]
    opacity = np.maximum(a0 + (1 - a0) * 0.75 * edge, np.clip(spec, 0, 1) * 0.9)
    if rng.random() < 0.6:  # paper label around the body
        a = rng.uniform(0.4, 0.6)
        band = (v > a) & (v < a + rng.uniform(0.15, 0.3))
        label = print_design(rng, np.arcsin(u) / np.float32(np.pi / 2), (v - a) * 3, pick(rng, PRINT_COLORS))
        rgb[band] = (label * diffuse[..., None] + 0.3 * spec[..., None])[band]
        opacity[band] = 1
    top = v < (0.12 if kind == "jar" else 0.035)
    if kind == "jar" or rng.random() < 0.6:  # metal crown cap or screw lid
        cap = pick(rng, [[0.85, 0.7, 0.2], [0.75, 0.75, 0.78], [0.15, 0.4, 0.2], [0.8, 0.1, 0.1]])
        rgb[top] = (cap * (0.4 + 0.6 * metal_bands(rng, u))[..., None])[top]
        opacity[top] = 1
    return Sprite(np.clip(rgb, 0, 1), alpha * opacity, outline, height=0.9, shadow=0.3 + 0.6 * a0)


def pet_bottle(rng: np.random.Generator, size: float) -> Sprite:
    """A PET bottle: nearly clear, ribbed, soft highlights, opaque coloured cap and wrap label; may be crushed."""
    length = int(size)
    body = length * rng.uniform(0.13, 0.2)
    a = rng.uniform(0.08, 0.2)
    radius = _bottle_profile(rng, length, body=body, neck=body * rng.uniform(0.38, 0.48),
                             shoulder=(a, a + rng.uniform(0.15, 0.25)), lip=1.2)
    crushed = rng.random() < 0.35
    if crushed:
        radius = _dent(rng, radius, 0.22)
    outline, alpha, u, v = _solid(radius)
    tint = pick(rng, _PET_TINTS, jitter=0.03)
    diffuse, spec = cylinder(u, u0=rng.uniform(-0.6, -0.3), gloss=0.7, width=0.12)
    ribs = 0.5 + 0.5 * np.sin(v * length / rng.uniform(5, 9) * 2 * np.pi)
    ribs *= (v > 0.75) | ((v > a + 0.1) & (v < 0.35))
    edge = np.abs(u) ** 4
    shade = (0.7 + 0.3 * diffuse) * (1 - 0.25 * ribs) * (1 - 0.3 * edge)
    if crushed:
        shade = shade * crumple(rng, *u.shape, cells=7, strength=2.0)
    rgb = tint * shade[..., None] + (spec * (0.7 + 0.6 * ribs))[..., None]
    opacity = np.clip(rng.uniform(0.12, 0.3) + 0.55 * edge + 0.25 * ribs + 0.8 * spec, 0, 1)
    if rng.random() < 0.7:
        lo = rng.uniform(0.35, 0.5)
        band = (v > lo) & (v < lo + rng.uniform(0.15, 0.3))
        label = print_design(rng, np.arcsin(u) / np.float32(np.pi / 2), (v - lo) * 3, pick(rng, PRINT_COLORS))
        rgb[band] = (label * (0.5 + 0.5 * diffuse)[..., None] + 0.4 * spec[..., None])[band]
        opacity[band] = 1
    top = v < 0.04
    rgb[top] = (pick(rng, PRINT_COLORS) * (0.5 + 0.5 * diffuse)[..., None])[top]
    opacity[top] = 1
    return Sprite(np.clip(rgb, 0, 1), alpha * opacity, outline, height=0.8, shadow=0.35)


def plastic_container(rng: np.random.Generator, size: float) -> Sprite:
    """An opaque plastic bottle (detergent, shampoo) or a clear plastic cup."""
    length = int(size)
    if rng.random() < 0.55:
        body = length * rng.uniform(0.18, 0.3)
        radius = _bottle_profile(rng, length, body=body, neck=0.35 * body, shoulder=(0.1, 0.22), lip=1.3)
        outline, alpha, u, v = _solid(radius)
        color = pick(rng, [[0.95, 0.95, 0.93], [0.2, 0.4, 0.85], [0.95, 0.55, 0.7], [0.95, 0.85, 0.2],
                           [0.3, 0.7, 0.35]])
        diffuse, spec = cylinder(u, u0=rng.uniform(-0.6, -0.3), gloss=0.35, width=0.2)
        design = print_design(rng, u, v, color) if rng.random() < 0.5 else np.broadcast_to(color, u.shape + (3,))
        rgb = design * diffuse[..., None] + spec[..., None]
        return Sprite(np.clip(rgb, 0, 1), alpha, outline, height=0.8)
    top = length * rng.uniform(0.35, 0.5)
    radius = _profile(length, [0, 0.05, 1], [top * 1.05, top, top * 0.72])
    outline, alpha, u, v = _solid(radius)
    diffuse, spec = cylinder(u, u0=-0.5, gloss=0.6, width=0.1)
    ribs = (np.sin(v * length / 4 * 2 * np.pi) > 0.6) & (v > 0.85)
    rgb = np.float32([0.9, 0.93, 0.95]) * (0.75 + 0.25 * diffuse)[..., None] + spec[..., None]
    opacity = np.clip(0.2 + 0.6 * np.abs(u) ** 4 + 0.8 * spec + 0.4 * ribs + 0.6 * (v < 0.05), 0, 1)
    return Sprite(np.clip(rgb, 0, 1), alpha * opacity, outline, height=0.7, shadow=0.3)


def paper_cup(rng: np.random.Generator, size: float) -> Sprite:
    """A take-away paper cup: truncated cone, printed band, rolled rim, sometimes a plastic lid."""
    length = int(size)
    top = length * rng.uniform(0.3, 0.4)
    lid = rng.random() < 0.4
    radius = _profile(length, [0, 0.06, 0.07, 1], [top * 1.08, top * 1.08, top, top * 0.7])
    outline, alpha, u, v = _solid(radius)
    diffuse, spec = cylinder(u, u0=-0.4, gloss=0.2, width=0.25)
    base = pick(rng, [[0.95, 0.95, 0.93], [0.93, 0.9, 0.82], [0.55, 0.38, 0.25]])
    rgb = print_design(rng, np.arcsin(u) / np.float32(np.pi / 2), v, base) * diffuse[..., None] + spec[..., None]
    rim = v < 0.07
    rgb[rim] = (np.float32([0.3, 0.3, 0.32] if lid else [0.97, 0.97, 0.95]) * diffuse[..., None])[rim]
    return Sprite(np.clip(rgb, 0, 1), alpha, outline, height=0.7)


def battery(rng: np.random.Generator, size: float) -> Sprite:
    """A cylindrical cell: coloured wrapper bands, metal + terminal nub and a '+' mark."""
    length = int(size)
    r = length * rng.uniform(0.14, 0.2)
    radius = _profile(length, [0, 0.06, 0.065, 0.97, 1], [0.35 * r, 0.35 * r, r, r, 0.9 * r])
    outline, alpha, u, v = _solid(radius)
    body = pick(rng, [[0.08, 0.08, 0.09], [0.1, 0.45, 0.2], [0.15, 0.3, 0.75], [0.85, 0.85, 0.85], [0.75, 0.1, 0.1]])
    band = pick(rng, [[0.8, 0.5, 0.2], [0.85, 0.7, 0.2], [0.75, 0.75, 0.78], [0.9, 0.4, 0.1]])
    split = rng.uniform(0.25, 0.45)
    design = np.where((v < split)[..., None], band, body)
    design[v < 0.065] = _SILVER
    h, w = u.shape
    cx, cy, k = w // 2, int(h * min(split, 0.3) * 0.6) + 2, max(1, int(r * 0.35))
    design[cy - 1:cy + 1, cx - k:cx + k] = 0.95  # the '+' mark
    design[cy - k:cy + k, cx - 1:cx + 1] = 0.95
    diffuse, spec = cylinder(u, u0=-0.45, gloss=0.8, width=0.08)
    rgb = design * (0.3 * diffuse + 0.6 * metal_bands(rng, u))[..., None] + spec[..., None]
    return Sprite(np.clip(rgb, 0, 1), alpha, outline, height=0.4)
