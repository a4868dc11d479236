"""evaluator.store.workspace: names cannot escape the workspace."""
from __future__ import annotations

import os

import pytest

from archspec.errors import UserError
from evaluator.store.workspace import list_specs, resolve_in_workspace, save_text


def test_save_inside(tmp_path):
    ws = tmp_path / "specs"
    p = save_text(ws, "a", "name: a\n")
    assert p == ws / "a.yaml" and p.read_text() == "name: a\n"
    assert save_text(ws, "sub/b.json", "{}") == ws / "sub" / "b.json"
    assert list_specs(ws) == [ws / "a.yaml"]


@pytest.mark.parametrize("name, msg", [
    ("../x.yaml", "'..' is refused"), ("a/../../x", "'..' is refused"),
    ("/etc/x.yaml", "absolute paths are refused"), ("~/x.yaml", "absolute paths"),
    ("", "give a file name"),
])
def test_refused_names(tmp_path, name, msg):
    with pytest.raises(UserError, match=msg):
        save_text(tmp_path / "specs", name, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["specs"])


def test_symlinks_pointing_out_are_refused(tmp_path):
    ws, out = tmp_path / "specs", tmp_path / "outside"
    ws.mkdir()
    out.mkdir()
    os.symlink(out, ws / "link")
    os.symlink(out / "f.yaml", ws / "f.yaml")
    for name in ("link/x.yaml", "f.yaml"):
        with pytest.raises(UserError, match="outside the workspace"):
            resolve_in_workspace(ws, name)
    assert list(out.iterdir()) == []
