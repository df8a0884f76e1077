"""trashlib: semantic segmentation of recycling-trash photos.

The package behind the numbered notebooks: competition data layer, a generated trash-scene
dataset, the competition metric and submission format, models, one training loop and inference.
"""
from trashlib.classes import CLASSES, CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, PALETTE

__version__ = "0.1.0"
__all__ = ["CLASSES", "CLASS_NAMES", "IGNORE_INDEX", "NUM_CLASSES", "PALETTE", "__version__"]
