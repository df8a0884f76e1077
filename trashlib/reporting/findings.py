"""Sentences written from the numbers: what a comparison or a stage measured, where a tie is called a tie.

Notebooks show them under "What we learned" (as Markdown: `as_markdown`) and the wrap-up page lists them
under "What worked, what did not", so both say the same thing about the same numbers (the rule is
`trashlib.scoring.compare.verdict`).
"""
from __future__ import annotations

import contextlib
import io
import math
import sys

import pandas as pd

PHRASES = {"gain": "a gain", "loss": "a loss", "tie": "a tie: its 95% interval holds 0",
           "one seed": "one seed only, so no noise estimate", "reference": "the reference", "level": "a level"}


def _num(v, fmt: str = ".3f") -> str:
    return "?" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def verdict_phrase(verdict: str, mde: float | None = None, *, fmt: str = ".3f") -> str:
    """The words for a verdict of `trashlib.scoring.compare`, one wording for every notebook and the wrap-up page:
    "a gain", "a loss", "a tie: its 95% interval holds 0, so no effect larger than 0.014 (the MDE)"."""
    power = (f", so no effect larger than {_num(mde, fmt)} (the MDE)" if verdict == "tie" and mde is not None
             and math.isfinite(mde) else "")
    return f"{PHRASES.get(verdict, verdict)}{power}"


def delta_sentence(name: str, value: float, spread: float | None, delta: float | None, reference: str,
                   verdict: str, *, seeds: int | None = None, ci: str = "", mde: float | None = None) -> str:
    """E.g. "global threshold: 0.312 ± 0.004 val mIoU over 3 seeds, +0.006 [-0.004, +0.016] against none:
    a tie: its 95% interval holds 0, so no effect larger than 0.014 (the MDE)"."""
    spread_text = f" ± {_num(spread)}" if spread else ""
    over = f" over {seeds} seeds" if seeds and seeds > 1 else ""
    interval = f" {ci}" if ci else ""
    against = f", {_num(delta, '+.3f')}{interval} against {reference}" if delta is not None and reference else ""
    return f"{name}: {_num(value)}{spread_text} val mIoU{over}{against}: {verdict_phrase(verdict, mde)}."


def table_findings(table: pd.DataFrame, *, reference: str = "none") -> list[str]:
    """One sentence per row of a `compare_table` (reference first), then which variant came out best."""
    delta_col = f"Δ vs {reference}"
    lines = []
    for name, row in table.iterrows():
        is_ref = name == reference
        lines.append(delta_sentence(str(name), row["val mIoU"], row["± spread"], None if is_ref else row[delta_col],
                                    "" if is_ref else reference, row["verdict"], seeds=int(row["seeds"]),
                                    ci=row.get("95% CI", ""), mde=None if is_ref else row.get("MDE")))
    gains = table[table["verdict"] == "gain"]
    if len(gains):
        best = gains["val mIoU"].idxmax()
        lines.append(f"Best: {best}, {table.loc[best, delta_col]:+.3f} against {reference}, above the noise.")
    else:
        mdes = table["MDE"].drop(reference, errors="ignore").dropna() if "MDE" in table else pd.Series(dtype=float)
        largest = f" (this design detects effects of {mdes.min():.3f} to {mdes.max():.3f})" if len(mdes) else ""
        lines.append(f"No variant beat {reference} beyond the noise{largest}.")
    return lines


@contextlib.contextmanager
def as_markdown():
    """Lines printed inside become the cell's output as Markdown, one bullet per line (a line that starts with
    spaces continues the bullet above): formatted text in JupyterLab and in the rendered report, not a
    monospace print. Outside IPython the lines are printed as they are. What was printed before an error
    inside is still shown."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        _show(buffer.getvalue())


def markdown_bullets(text: str) -> str:
    """Printed lines as Markdown bullets: "- " kept, indented lines continue the bullet above, others get "- "."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        out.append("  " + line.strip() if line[:1].isspace() and out else
                   line if line.startswith("- ") else "- " + line)
    return "\n".join(out)


def _show(text: str) -> None:
    shell = None
    if "IPython" in sys.modules:  # imported by a kernel: no cost and no import where there is none
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None or not text.strip():
        sys.stdout.write(text)
        return
    from IPython.display import Markdown, display

    display(Markdown(markdown_bullets(text)))
