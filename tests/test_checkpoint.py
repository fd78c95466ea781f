"""``trainer.checkpoint.resolve_checkpoint``: a run folder or a checkpoint file -> the file every command reads."""

from __future__ import annotations

import pytest

from runtime.errors import KickspaceError
from trainer.checkpoint import BEST, LAST, resolve_checkpoint


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # the resolver only names a file; reading it is load_checkpoint's job
    return path


def test_a_checkpoint_file_is_taken_as_given(tmp_path):
    ckpt = _touch(tmp_path / "elsewhere" / "copy.pt")
    assert resolve_checkpoint(ckpt) == ckpt
    assert resolve_checkpoint(str(ckpt), LAST) == ckpt  # a file given directly wins over the name


def test_a_run_folder_gives_best_else_last(tmp_path):
    run = tmp_path / "run"
    last = _touch(run / LAST)
    assert resolve_checkpoint(run) == last  # stopped between last.pt and its first best.pt
    best = _touch(run / BEST)
    assert resolve_checkpoint(run) == best
    assert resolve_checkpoint(run, BEST) == best
    assert resolve_checkpoint(run, LAST) == last


def test_a_name_other_than_best_is_taken_exactly(tmp_path):
    run = tmp_path / "run"
    _touch(run / BEST)
    epoch = _touch(run / "epoch10.pt")
    assert resolve_checkpoint(run, "epoch10.pt") == epoch
    with pytest.raises(KickspaceError) as err:
        resolve_checkpoint(run, "epoch11.pt")
    assert str(err.value) == (f"{run}: no checkpoint: no epoch11.pt in this folder (is it a run folder written by "
                              "`trainer fit`?)")


def test_missing_checkpoints_are_one_line_naming_the_path_and_what_was_looked_for(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KickspaceError) as err:
        resolve_checkpoint(empty)
    message = str(err.value)
    assert message.startswith(f"{empty}: no checkpoint: no best.pt or last.pt in this folder")
    assert "\n" not in message
    with pytest.raises(KickspaceError) as err:
        resolve_checkpoint(tmp_path / "nothing")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'nothing'}: no checkpoint: neither a checkpoint file nor a run folder")
    assert "\n" not in message
