"""Atomic writes: whole file or nothing, with the user's umask (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tdanet import load_model, save_checkpoint
from tdanet.atomic import replaced_on_success, staging_directory
from tdanet.evaluation import write_rows


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_success_renames_into_place(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with replaced_on_success(target) as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".out.bin.")
        temp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failure_leaves_nothing_and_keeps_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replaced_on_success(target) as temp:
        temp.write_bytes(b"part")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.usefixtures("umask_022")
def test_outputs_get_the_umask_mode(tmp_path: Path) -> None:
    checkpoint = save_checkpoint(load_model("tdanet-tiny"), tmp_path / "model.pt")
    table = tmp_path / "scores.csv"
    write_rows(table, [{"name": "a", "si_snr": 1.0}])
    assert mode(checkpoint) == 0o644
    assert mode(table) == 0o644


@pytest.mark.usefixtures("umask_022")
def test_staging_directory_is_new_hidden_and_gets_the_umask_mode(tmp_path: Path) -> None:
    first, second = staging_directory(tmp_path / "out"), staging_directory(tmp_path / "out")
    assert first != second and first.parent == tmp_path and first.name.startswith(".out.")
    assert list(first.iterdir()) == []
    assert mode(first) == 0o755
