from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


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
