"""One colour per verdict, for every chart that colours by verdict (05's stages, the wrap-up's waterfall)."""
from __future__ import annotations

VERDICT_COLOURS = {"level": "#7f9fbf", "gain": "#3a9a4a", "loss": "#c8423b", "tie": "#a8a8a8", "one seed": "#a8a8a8",
                   "reference": "#7f9fbf"}


def verdict_colour(verdict: str) -> str:
    """The colour of a verdict; one not listed is drawn as a tie (grey)."""
    return VERDICT_COLOURS.get(verdict, VERDICT_COLOURS["tie"])
