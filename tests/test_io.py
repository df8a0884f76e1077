"""Atomic writes: all or nothing, normal permissions, JSON identical to json.dump's."""
from __future__ import annotations

import json
import os

import pytest

from trashlib.io import atomic_open, write_json


def test_atomic_open_keeps_the_old_file_when_the_block_fails(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write("new")
            raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_atomic_files_get_umask_permissions_not_mkstemps_0600(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("indent", [None, 2])
def test_write_json_text_equals_json_dump(tmp_path, indent):
    obj = {"images": [{"id": 1, "file_name": "batch_01_vt/0002.jpg"}], "v": [1.5, None, "é"]}
    write_json(tmp_path / "a.json", obj, indent=indent)
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == json.dumps(obj, indent=indent)
