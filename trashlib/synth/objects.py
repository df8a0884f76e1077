"""Which objects a scene holds: class frequencies, size priors, and the renderers of each class."""
from __future__ import annotations

import numpy as np

from trashlib.classes import CLASSES, COMPETITION_COUNTS, NUM_CLASSES, class_id
from trashlib.synth.flats import carton, paper, styrofoam, tin
from trashlib.synth.shapes import Sprite
from trashlib.synth.soft import clothing, general_trash, plastic_bag, plastic_tray
from trashlib.synth.solids import battery, can, glass_bottle, pet_bottle, plastic_container

# category_id -> [(renderer, weight)]: the look of each class, varied within the class on purpose.
RENDERERS = {
    1: [(general_trash, 1.0)],
    2: [(paper, 1.0)],
    3: [(carton, 1.0)],
    4: [(can, 0.8), (tin, 0.2)],
    5: [(glass_bottle, 1.0)],
    6: [(pet_bottle, 0.5), (plastic_container, 0.3), (plastic_tray, 0.2)],
    7: [(styrofoam, 1.0)],
    8: [(plastic_bag, 1.0)],
    9: [(battery, 1.0)],
    10: [(clothing, 1.0)],
}
# category_id -> (min, max) long side as a fraction of the image side, drawn log-uniformly.
OBJECT_SIZE_RANGES = {1: (0.08, 0.3), 2: (0.12, 0.45), 3: (0.14, 0.32), 4: (0.1, 0.24), 5: (0.25, 0.6),
                      6: (0.15, 0.55), 7: (0.12, 0.4), 8: (0.18, 0.8), 9: (0.08, 0.18), 10: (0.3, 0.7)}
# Deliberate label noise: a wrong label is a class a tired annotator would confuse with the right one.
CONFUSIONS = {1: (6, 2), 2: (3, 1, 7), 3: (2,), 4: (1, 6), 5: (6,), 6: (1, 5, 8), 7: (2, 6), 8: (6, 1),
              9: (4, 1), 10: (1, 8)}
BAG_ID = class_id("Plastic bag")


def class_probabilities() -> np.ndarray:
    """Sampling probability of each category_id (index 0, Background, is 0): the competition's counts.

    Shape:
        returns: (NUM_CLASSES,) float64 summing to 1.
    """
    p = np.zeros(NUM_CLASSES)
    for c in CLASSES[1:]:
        p[c.id] = COMPETITION_COUNTS[c.name]
    return p / p.sum()


_PROBS = class_probabilities()


def sample_classes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw `n` object classes (category_ids) in the competition's proportions; (n,) int64."""
    return rng.choice(NUM_CLASSES, size=n, p=_PROBS)


def sample_count(rng: np.random.Generator, *, max_objects: int = 20) -> int:
    """Objects in one scene: 1 to `max_objects`, about 8 on average, as in the competition."""
    return int(min(max_objects, 1 + rng.negative_binomial(2, 2 / (2 + 7.5))))


def render_object(rng: np.random.Generator, category_id: int, *, image_size: int, zoom: float = 1.0) -> Sprite:
    """Render one object of a class at a size drawn from its prior times `zoom` (upright, before rotation)."""
    if category_id not in RENDERERS:
        raise KeyError(f"no renderer for category_id {category_id}; valid: {sorted(RENDERERS)}")
    options = RENDERERS[category_id]
    weights = np.array([w for _, w in options])
    fn = options[int(rng.choice(len(options), p=weights / weights.sum()))][0]
    lo, hi = OBJECT_SIZE_RANGES[category_id]
    size = zoom * image_size * float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return fn(rng, max(size, 12.0))


def wrong_label(rng: np.random.Generator, category_id: int) -> int:
    """A plausible wrong category_id for a deliberate mislabel (never the true one)."""
    return int(rng.choice(CONFUSIONS[category_id]))
