"""Atomic writes: whole file or nothing, with the user's umask (not mkstemp's 0600)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tdanet import load_model, save_checkpoint
from tdanet.atomic import (
    OWNER_FILE,
    owned_staging_directory,
    promote_staging,
    remove_abandoned_staging,
    replaced_on_success,
    staging_directory,
)
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


def ended_pid() -> int:
    """The pid of a process that has run and ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_staging_folders_of_ended_processes_here_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    host = socket.gethostname()
    owners = {
        "dead": f"{host} {ended_pid()}",
        "alive": f"{host} {os.getpid()}",
        "elsewhere": f"another-{host} {ended_pid()}",
        "garbled": "not an owner",
    }
    folders = {}
    for name, owner in owners.items():
        folders[name] = owned_staging_directory(out)
        (folders[name] / OWNER_FILE).write_text(owner)
        (folders[name] / "half.flac").write_bytes(b"x")
    folders["unowned"] = staging_directory(out)
    other = owned_staging_directory(tmp_path / "corpus2")  # another output's
    (other / OWNER_FILE).write_text(owners["dead"])
    assert remove_abandoned_staging(out) == [folders["dead"]]
    assert not folders["dead"].exists()
    assert all(folders[n].exists() for n in ("alive", "elsewhere", "garbled", "unowned"))
    assert other.exists()


def test_promoted_staging_drops_its_owner_record(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()  # an empty folder may be replaced
    staging = owned_staging_directory(out)
    assert (staging / OWNER_FILE).read_text() == f"{socket.gethostname()} {os.getpid()}\n"
    (staging / "data.csv").write_text("a\n")
    promote_staging(staging, out)
    assert sorted(p.name for p in out.iterdir()) == ["data.csv"] and not staging.exists()
    assert remove_abandoned_staging(out) == []
