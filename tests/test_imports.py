"""Import boundaries: the model package needs only torch; the command line's help and
argument errors load no torch at all (they answer in a fraction of a second)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_after(code: str) -> set[str]:
    """Modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_model_package_imports_only_torch() -> None:
    loaded = loaded_after("import tdanet.model")
    ours = {name for name in loaded if name.split(".")[0] == "tdanet"}
    assert ours and all(
        name in ("tdanet", "tdanet.model") or name.startswith("tdanet.model.") for name in ours
    ), ours
    assert not loaded & {"soundfile", "soxr", "av", "lightning", "scipy", "yaml"}


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["separate", "--help"], ["corpus", "--help"], ["separate"], ["train", "--bogus"]],
)
def test_help_and_argument_errors_load_no_torch(argv: list[str]) -> None:
    code = (
        "from tdanet.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, 2), exc.code\n"
    )
    loaded = loaded_after(code)
    assert "torch" not in loaded and "soundfile" not in loaded


def test_public_names_resolve_lazily() -> None:
    import tdanet

    assert tdanet.load_model.__module__ == "tdanet.pretrained"
    assert tdanet.Separator.__name__ == "Separator"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tdanet.nothing  # noqa: B018


def test_threads_wait_passively_from_the_first_torch_and_numpy_import_of_a_command() -> None:
    # OpenMP reads OMP_WAIT_POLICY once, when torch loads, and OpenBLAS its thread count when
    # numpy loads: spinning threads cost CPU time on a busy machine (docs/separate.md).
    code = (
        "import importlib.abc, os, sys\n"
        "os.environ.pop('OMP_WAIT_POLICY', None)\n"
        "os.environ.pop('OPENBLAS_NUM_THREADS', None)\n"
        "seen = {}\n"
        "class Watch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name in ('torch', 'numpy') and name not in seen:\n"
        "            seen[name] = (os.environ.get('OMP_WAIT_POLICY'),\n"
        "                          os.environ.get('OPENBLAS_NUM_THREADS'))\n"
        "sys.meta_path.insert(0, Watch())\n"
        "from tdanet.cli import main\n"
        "main(['info', 'tdanet-tiny'])\n"
        "print('seen', sorted(seen.items()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "seen [('numpy', ('PASSIVE', '1')), ('torch', ('PASSIVE', '1'))]" in result.stdout
