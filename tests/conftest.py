from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL_SMALL = FIXTURES / "official-small-4ms-2src"


@pytest.fixture(autouse=True, scope="session")
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Caches (the native kernel's build, ...) go to a temporary folder, for subprocesses too."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op torch thread: the machine's cores are shared and oversubscription is slow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every weight a non-default value (norm gains and PReLU slopes included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model
