"""The colour-only floor: features by hand, a colour-separable set learnt exactly, unseen classes never predicted."""
from __future__ import annotations

import numpy as np
import pytest

from trashlib.scoring.colour_floor import FEATURES, ColourFloor, pixel_features, score_colour_floor


class Painted:
    """Images whose left half is one colour (class 2) and right half another (class 5), plus ignore."""

    def __init__(self, n=4, size=32, seed=0):
        rng = np.random.default_rng(seed)
        self.images, self.masks = [], []
        for _ in range(n):
            image = np.zeros((size, size, 3), np.uint8)
            image[:, : size // 2] = (200, 40, 40) + rng.integers(-10, 10, (size, size // 2, 3))
            image[:, size // 2:] = (40, 40, 200) + rng.integers(-10, 10, (size, size - size // 2, 3))
            mask = np.full((size, size), 2, np.uint8)
            mask[:, size // 2:] = 5
            mask[:2] = 255
            self.images.append(image)
            self.masks.append(mask)

    def __len__(self):
        return len(self.images)

    def load_image(self, i):
        return self.images[i]

    def load_mask(self, i):
        return self.masks[i]


def test_features_by_hand():
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 255  # pure red, flat
    f = pixel_features(image)
    assert f.shape == (8, 8, len(FEATURES)) and f.dtype == np.float32
    np.testing.assert_allclose(f[4, 4, :3], [1, 0, 0])
    np.testing.assert_allclose(f[4, 4, 6:8], [1, 0], atol=1e-6)  # hue 0: (cos, sin) = (1, 0)
    assert f[..., 8].max() < 1e-3  # no texture


def test_colour_separable_set_is_learnt_and_unseen_classes_never_predicted():
    train, val = Painted(seed=0), Painted(n=2, seed=1)
    floor, scores = score_colour_floor(train, val)
    assert scores.miou == pytest.approx(1.0)  # classes 2 and 5 only; ignore rows skipped
    assert set(np.unique(floor.predict(val.load_image(0)))) == {2, 5}
    assert np.isneginf(floor.log_norms[[0, 1, 3, 4, 6, 7, 8, 9, 10]]).all()


def test_predict_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="before fit"):
        ColourFloor().predict(np.zeros((4, 4, 3), np.uint8))
