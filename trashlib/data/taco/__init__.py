"""TACO (Proença & Simões 2020, tacodataset.org) in the competition layout: `python -m trashlib data taco`.

`source` reads TACO's annotation files, `classes` maps its 60 categories onto the 10 classes, `photo` turns
each photo upright and resizes it with its polygons, `layout` writes the split files, and `build` runs it all.
"""
from trashlib.data.taco.build import TacoBuild, build_taco
from trashlib.data.taco.classes import TACO_CATEGORIES, taco_class
from trashlib.data.taco.source import DEFAULT_SOURCE

__all__ = ["DEFAULT_SOURCE", "TACO_CATEGORIES", "TacoBuild", "build_taco", "taco_class"]
