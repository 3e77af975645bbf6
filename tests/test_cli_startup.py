"""The command starts without the heavy libraries: ``--help``, ``--version`` and ``methods`` import no torch,
diffusers or transformers (each verb imports them inside its command)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers")


def _imported_modules(code: str) -> set[str]:
    """Top-level modules a fresh interpreter imports while running ``code`` (from ``-X importtime``)."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         check=True)
    names = set()
    for line in run.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["methods"], ["remove", "--help"]],
                         ids=lambda a: " ".join(a))
def test_light_commands_import_no_heavy_library(argv):
    code = f"import sys; from erasekit.cli import main; sys.exit(main({argv!r}))"
    imported = _imported_modules(code)
    assert "erasekit" in imported  # the probe itself works
    assert not imported & set(HEAVY), f"{argv} imported {sorted(imported & set(HEAVY))}"


def test_version_prints_the_package_version():
    import erasekit

    run = subprocess.run([sys.executable, "-m", "erasekit", "--version"], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0
    assert run.stdout.strip() == f"erasekit {erasekit.__version__}"
