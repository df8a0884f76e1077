"""The one table mapping TACO's 60 categories onto the competition's 10 classes, each with its reason.

The competition sorts waste as Korean separate collection does (paper, paper packs, cans, glass, plastics,
styrofoam, film, batteries, clothing; the rest is general trash); where that rule and the visible material
disagree, the material wins, since a segmentation model sees only the material. A category mapped to None
is dropped: its polygons are left out and its pixels stay Background.
"""
from __future__ import annotations

from typing import NamedTuple

from trashlib.classes import class_id


class TacoCategory(NamedTuple):
    name: str          # TACO's category name, as in its annotations.json
    target: str | None  # a trashlib class name, or None: dropped
    reason: str


TACO_CATEGORIES: tuple[TacoCategory, ...] = (
    TacoCategory("Aluminium foil", "Metal", "aluminium, collected with cans"),
    TacoCategory("Battery", "Battery", "the same class"),
    TacoCategory("Aluminium blister pack", "General trash", "aluminium bonded to plastic: no stream takes it"),
    TacoCategory("Carded blister pack", "General trash", "card bonded to plastic: no stream takes it"),
    TacoCategory("Other plastic bottle", "Plastic", "rigid plastic"),
    TacoCategory("Clear plastic bottle", "Plastic", "rigid plastic (PET)"),
    TacoCategory("Glass bottle", "Glass", "glass"),
    TacoCategory("Plastic bottle cap", "Plastic", "rigid plastic"),
    TacoCategory("Metal bottle cap", "Metal", "metal"),
    TacoCategory("Broken glass", "Glass", "looks like glass (Korean rules bin shards as general trash)"),
    TacoCategory("Food Can", "Metal", "can"),
    TacoCategory("Aerosol", "Metal", "metal can"),
    TacoCategory("Drink can", "Metal", "can"),
    TacoCategory("Toilet tube", "Paper", "plain cardboard"),
    TacoCategory("Other carton", "Paper", "cardboard box, not a liquid carton"),
    TacoCategory("Egg carton", "Paper", "moulded paper pulp"),
    TacoCategory("Drink carton", "Paper pack", "liquid carton, what the competition calls a paper pack"),
    TacoCategory("Corrugated carton", "Paper", "cardboard"),
    TacoCategory("Meal carton", "Paper", "paperboard box"),
    TacoCategory("Pizza box", "Paper", "cardboard"),
    TacoCategory("Paper cup", "Paper pack", "coated paper, collected with liquid cartons"),
    TacoCategory("Disposable plastic cup", "Plastic", "rigid plastic"),
    TacoCategory("Foam cup", "Styrofoam", "expanded polystyrene"),
    TacoCategory("Glass cup", "Glass", "glass"),
    TacoCategory("Other plastic cup", "Plastic", "rigid plastic"),
    TacoCategory("Food waste", None, "organic waste, no material class; like leaves in the scene it is Background"),
    TacoCategory("Glass jar", "Glass", "glass"),
    TacoCategory("Plastic lid", "Plastic", "rigid plastic"),
    TacoCategory("Metal lid", "Metal", "metal"),
    TacoCategory("Other plastic", "Plastic", "plastic of unknown kind, mostly rigid pieces"),
    TacoCategory("Magazine paper", "Paper", "paper"),
    TacoCategory("Tissues", "General trash", "used tissue is not recyclable paper"),
    TacoCategory("Wrapping paper", "Paper", "paper"),
    TacoCategory("Normal paper", "Paper", "paper"),
    TacoCategory("Paper bag", "Paper", "paper"),
    TacoCategory("Plastified paper bag", "General trash", "paper laminated with plastic: no stream takes it"),
    TacoCategory("Plastic film", "Plastic bag", "film, the competition's plastic bag class"),
    TacoCategory("Six pack rings", "Plastic", "rigid plastic rings, not film"),
    TacoCategory("Garbage bag", "Plastic bag", "film bag"),
    TacoCategory("Other plastic wrapper", "Plastic bag", "film wrapper"),
    TacoCategory("Single-use carrier bag", "Plastic bag", "film bag"),
    TacoCategory("Polypropylene bag", "Plastic bag", "woven plastic bag, collected as film"),
    TacoCategory("Crisp packet", "Plastic bag", "metallised film, collected as film"),
    TacoCategory("Spread tub", "Plastic", "rigid plastic"),
    TacoCategory("Tupperware", "Plastic", "rigid plastic"),
    TacoCategory("Disposable food container", "Plastic", "rigid plastic"),
    TacoCategory("Foam food container", "Styrofoam", "expanded polystyrene"),
    TacoCategory("Other plastic container", "Plastic", "rigid plastic"),
    TacoCategory("Plastic glooves", "General trash", "thin gloves go to general trash; not clothing"),
    TacoCategory("Plastic utensils", "Plastic", "rigid plastic"),
    TacoCategory("Pop tab", "Metal", "aluminium"),
    TacoCategory("Rope & strings", "General trash", "mixed fibres, no stream takes them"),
    TacoCategory("Scrap metal", "Metal", "metal"),
    TacoCategory("Shoe", "Clothing", "worn items, collected with clothing"),
    TacoCategory("Squeezable tube", "Plastic", "plastic tube"),
    TacoCategory("Plastic straw", "Plastic", "rigid plastic"),
    TacoCategory("Paper straw", "Paper", "paper"),
    TacoCategory("Styrofoam piece", "Styrofoam", "expanded polystyrene"),
    TacoCategory("Unlabeled litter", "General trash", "litter of unknown material: the catch-all class"),
    TacoCategory("Cigarette", "General trash", "butts go to general trash"),
)
_IDS = {c.name: None if c.target is None else class_id(c.target) for c in TACO_CATEGORIES}


def taco_class(name: str) -> int | None:
    """The trashlib class id of a TACO category name, or None when it is dropped; KeyError if unknown."""
    if name not in _IDS:
        raise KeyError(f"TACO category {name!r} is not in trashlib's table (trashlib/data/taco/classes.py)")
    return _IDS[name]
