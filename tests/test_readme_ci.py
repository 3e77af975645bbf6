"""The README's install commands and what CI runs are the same commands, in the same order.

A newcomer follows the README literally; CI (``.ci/run``) proves those exact lines work on a fresh clone. If
one of them changes, the other must change with it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH_CPU = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"


def _readme_commands() -> list[str]:
    """The torch command (first), then the two commands that open the README's first code block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.DOTALL)
    assert block is not None
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    demo, tests = lines[0], lines[1]
    assert demo.startswith("pip install -e . && erasekit demo")
    assert tests.startswith('pip install -e ".[dev]"')
    assert f"`{TORCH_CPU}`" in text  # the CPU-only torch command, named before anything is run
    return [TORCH_CPU, demo, tests]


def _ci_lines() -> list[str]:
    return [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_opens_with_the_two_commands():
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert block is not None
    first_two = [line.strip() for line in block.group(1).splitlines()[:2]]
    assert first_two[0].startswith("pip install -e . && erasekit demo --out demo/")
    assert first_two[1].startswith('pip install -e ".[dev]" && pytest')


def test_ci_runs_the_readme_commands_verbatim_and_in_order():
    ci = _ci_lines()
    positions = []
    for command in _readme_commands():
        # verbatim, or verbatim plus `|| exit 1` (set -e does not stop at a failure before `&&`)
        hits = [i for i, line in enumerate(ci) if line in (command, f"{command} || exit 1")]
        assert hits, f".ci/run does not run the README's `{command}`"
        positions.append(hits[0])
    assert positions == sorted(positions), "the README and .ci/run run these commands in another order"
    # The documented fallback when PyTorch's index is unreachable is the plain pin, right beside it.
    torch_at = positions[0]
    assert "pip install torch==2.13.0" in ci[torch_at:torch_at + 4]


def test_ci_script_is_valid_bash():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    proc = subprocess.run([bash, "-n", str(ROOT / ".ci" / "run")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_hypothesis_database_and_reference_unpacks_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".hypothesis/" in ignored and ".refs/" in ignored


def test_the_suite_runs_on_its_own_hugging_face_home():
    """conftest.py points HF_HOME and TORCH_HOME at a fresh folder: no test sees the machine's caches."""
    import huggingface_hub.constants as hub

    from conftest import TEST_HOME

    assert Path(hub.HF_HUB_CACHE).resolve().is_relative_to(TEST_HOME.resolve())
    assert Path(os.environ["TORCH_HOME"]).resolve().is_relative_to(TEST_HOME.resolve())


def test_every_method_the_package_description_names_exists():
    import tomllib

    import erasekit
    from erasekit.refiners.registry import refiner_names

    description = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["description"]
    names = set(erasekit.registry.method_names())
    for paper, method in (("OSOR", "osor-sdxl"), ("EraDiff", "eradiff"), ("CLIPAway", "clipaway"),
                          ("MagicRemover", "magicremover")):
        assert paper in description and method in names, paper
    assert "PixPerfect" in description and "pixperfect" in refiner_names()
