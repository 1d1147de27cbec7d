from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for group in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in group]
    return {r.name.lower(): r for r in reqs}


def test_torch_range_admits_the_local_cpu_build_and_nothing_newer() -> None:
    torch_req = _requirements()["torch"]
    assert torch_req.specifier.contains("2.13.0+cpu", prereleases=False)
    assert torch_req.specifier.contains("2.13.0")
    assert not torch_req.specifier.contains("2.14.0")


def test_no_torchaudio_or_toolkits_that_pull_cuda() -> None:
    names = set(_requirements())
    assert not names & {"torchaudio", "asteroid", "speechbrain", "torchvision"}


def test_cli_entry_point_is_declared() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["scripts"]["tdanet"] == "tdanet.cli:main"


def test_wheel_holds_the_data_files_the_package_reads(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ beside the sources.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
    subprocess.run(
        [*pip, "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("tdanet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "tdanet/model/native.c",  # the fast path's kernel source, compiled on first use
        "tdanet/assets/tdanet-demo.pt",
        "tdanet/assets/tfacm-demo.pt",
        "tdanet/web/static/index.html",
        "tdanet/py.typed",
    ):
        assert needed in names, needed
