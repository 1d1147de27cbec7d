"""Running ``tdanet corpus`` in a subprocess, as a user would, for the corpus tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_corpus(
    cache: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m tdanet corpus --cache CACHE ARGS...``, its output captured as text."""
    command = [sys.executable, "-m", "tdanet", "corpus", "--cache", str(cache), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
