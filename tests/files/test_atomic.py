"""Atomic writes: a file appears only when complete, with the mode an ordinary write gives."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from workflow_scripts.files.audio import atomic_dir, atomic_write_text, process_umask, write_audio


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_get_the_mode_of_an_ordinary_write(tmp_path, umask):
    assert process_umask() == umask
    ordinary = tmp_path / "ordinary.txt"
    ordinary.write_text("x")
    (tmp_path / "ordinary_dir").mkdir()

    atomic_write_text(tmp_path / "summary.md", "x")
    write_audio(tmp_path / "clip.wav", np.zeros(160, np.float32))
    with atomic_dir(tmp_path / "speech") as folder:
        (folder / "manifest.csv").write_text("x")

    assert mode(tmp_path / "summary.md") == mode(ordinary) == 0o666 & ~umask
    assert mode(tmp_path / "clip.wav") == 0o666 & ~umask
    assert mode(tmp_path / "speech") == mode(tmp_path / "ordinary_dir") == 0o777 & ~umask
    assert mode(tmp_path / "speech" / "manifest.csv") == 0o666 & ~umask
    assert not list(tmp_path.glob(".*"))


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "speech") as folder:
            (folder / "manifest.csv").write_text("x")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
