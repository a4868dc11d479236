"""``archsearch rehash``: runs stored under an older canonical form move to their new hash."""
from __future__ import annotations

import json

import pytest

from app.cli import main
from archspec import canonical, load_spec, spec_hash
from evaluator.store.rekey import rekey_runs
from tests.conftest import SPECS

EXPLICIT = ["model.nodes.eps.encoder.params={act: crelu}"]  # a block default, written out


def _old_run(root, spec, folder: str, resolved: dict):
    """A run folder as an older toolkit stored it: ``resolved`` under ``folder``."""
    path = root / "runs" / spec.name / folder
    path.mkdir(parents=True)
    (path / "spec.resolved.json").write_text(json.dumps(resolved))
    (path / "status.json").write_text(json.dumps({"status": "finished", "hash": folder}))
    return path


@pytest.fixture
def specs():
    plain = load_spec(SPECS / "spectral_unet_8.yaml")
    explicit = load_spec(SPECS / "spectral_unet_8.yaml", overrides=EXPLICIT)
    old = canonical(explicit)
    old["model"]["nodes"]["eps"]["encoder"]["params"] = {"act": "crelu"}  # the old form kept it
    return plain, old


def test_explicit_default_hashes_like_the_omitted_one(specs):
    plain, _ = specs
    explicit = load_spec(SPECS / "spectral_unet_8.yaml", overrides=EXPLICIT)
    assert spec_hash(explicit) == spec_hash(plain)


def test_old_folder_moves_to_the_new_hash(tmp_path, specs):
    plain, old = specs
    _old_run(tmp_path, plain, "0ldhash", old)
    [r] = rekey_runs(tmp_path, dry_run=True)
    assert r.action == "would move" and r.new.name == spec_hash(plain)
    assert (tmp_path / "runs" / plain.name / "0ldhash").is_dir()  # a dry run moves nothing
    [r] = rekey_runs(tmp_path)
    assert r.action == "moved" and not r.old.exists()
    status = json.loads((r.new / "status.json").read_text())
    assert status["hash"] == spec_hash(plain) and status["rekeyed_from"] == "0ldhash"
    assert [x.action for x in rekey_runs(tmp_path)] == ["kept"]  # idempotent


def test_existing_new_hash_is_never_overwritten(tmp_path, specs, capsys):
    plain, old = specs
    _old_run(tmp_path, plain, "0ldhash", old)
    kept = _old_run(tmp_path, plain, spec_hash(plain), canonical(plain))
    (kept / "marker").write_text("mine")
    assert main(["rehash", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "conflict:" in out and "1 conflict" in out and "1 kept" in out
    assert (kept / "marker").read_text() == "mine"
    assert (tmp_path / "runs" / plain.name / "0ldhash").is_dir()


def test_unreadable_resolved_spec_is_reported_not_raised(tmp_path, specs):
    plain, _ = specs
    path = tmp_path / "runs" / plain.name / "broken"
    path.mkdir(parents=True)
    (path / "spec.resolved.json").write_text("{not json")
    [r] = rekey_runs(tmp_path)
    assert r.action == "unreadable" and path.is_dir()


def test_a_held_run_is_moved_only_after_its_holder_lets_go(tmp_path, specs, capsys):
    import threading

    from evaluator.store.runlock import OWNER_NAME, hold_run

    plain, old = specs
    path = _old_run(tmp_path, plain, "0ldhash", old)
    held, release = threading.Event(), threading.Event()

    def holder():  # another thread: the lock is re-entrant within one thread only
        with hold_run(path, "archsearch train"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(30)
    try:
        assert main(["rehash", "--out", str(tmp_path), "--no-wait"]) == 3
        out = capsys.readouterr().out
        assert "busy: " in out and "(archsearch train)" in out and path.is_dir()
        threading.Timer(0.5, release.set).start()
        [moved] = rekey_runs(tmp_path)  # waits for the holder, then moves the folder
    finally:
        release.set()
        t.join()
    assert moved.action == "moved" and not path.exists() and moved.new.is_dir()
    assert "waiting for run" in capsys.readouterr().err
    assert not (moved.new / OWNER_NAME).exists()  # nobody named as holder of the new folder
    with hold_run(moved.new, "after", wait=False):
        pass
