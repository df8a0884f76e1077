"""Progress bars: shown where a person watches, off in rendered reports (TRASHLIB_PROGRESS=0)."""
from __future__ import annotations

import os

import pytest

from trashlib import progress
from trashlib.reporting.runner import _environment


@pytest.mark.parametrize("value, expected", [(None, True), ("1", True), ("0", False), ("off", False),
                                             (" False ", False), ("yes", True)])
def test_the_default_follows_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(progress.ENV, raising=False)
    else:
        monkeypatch.setenv(progress.ENV, value)
    assert progress.shown() is expected
    assert progress.shown(None) is expected


def test_an_explicit_choice_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(progress.ENV, "0")
    assert progress.shown(True) is True
    monkeypatch.setenv(progress.ENV, "1")
    assert progress.shown(False) is False


def test_the_report_turns_bars_off_for_its_kernels_and_restores_the_environment(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setenv("TRASHLIB_REPORTS", "/somewhere")
    with _environment(**{progress.ENV: "0"}, TRASHLIB_REPORTS="/elsewhere"):
        assert not progress.shown()
        assert os.environ["TRASHLIB_REPORTS"] == "/elsewhere"
    assert progress.ENV not in os.environ
    assert os.environ["TRASHLIB_REPORTS"] == "/somewhere"
