"""The embedded default dataset: generated trash scenes written in the competition's exact layout."""
from trashlib.synth.generate import generate_dataset
from trashlib.synth.scene import render_scene

__all__ = ["generate_dataset", "render_scene"]
