"""The `erasekit` command end to end on real photos: outputs, exit codes, one-line errors, --debug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import skimage.data
from PIL import Image

import erasekit
from erasekit import registry
from erasekit.cli import main
from erasekit.methods.base import Remover
from erasekit.options import Option, OptionSet, Range
from erasekit.registry import MethodSpec, WeightRequirement

CLASSICAL = ("patchmatch", "telea", "ns")


def _photo(name: str, step: int = 3) -> np.ndarray:
    """A real photo from scikit-image, subsampled so every test stays fast."""
    return np.ascontiguousarray(getattr(skimage.data, name)()[::step, ::step])


@pytest.fixture
def scene(tmp_path: Path):
    """The astronaut (171×171) as PNG with a mask over her mission patch, both on disk."""
    image = _photo("astronaut")
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[112:145, 42:72] = 255  # the mission patch at 1/3 scale
    image_path, mask_path = tmp_path / "astronaut.png", tmp_path / "astronaut_mask.png"
    Image.fromarray(image).save(image_path)
    Image.fromarray(mask).save(mask_path)
    return image, mask > 0, image_path, mask_path


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line message, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("method", CLASSICAL)
def test_remove_each_classical_method_changes_only_the_mask(scene, tmp_path, method, capsys):
    image, inside, image_path, mask_path = scene
    out = tmp_path / f"out_{method}.png"
    code = main(["remove", str(image_path), "--mask", str(mask_path), "-o", str(out), "--method", method,
                 "--seed", "0"])
    assert code == 0
    result = np.asarray(Image.open(out).convert("RGB"))
    assert result.shape == image.shape
    np.testing.assert_array_equal(
        result[~inside], image[~inside]
    )  # every pixel outside the mask, bit for bit
    assert np.abs(result[inside].astype(int) - image[inside]).mean() > 5  # the patch is gone
    assert f"{method}: wrote" in capsys.readouterr().err


def test_remove_dilate_grows_the_changed_region_only_by_that_much(scene, tmp_path):
    image, inside, image_path, mask_path = scene
    out = tmp_path / "out.png"
    assert (
        main(
            ["remove", str(image_path), "-m", str(mask_path), "-o", str(out), "--method", "telea", "--dilate",
             "3"]
        )
        == 0
    )
    result = np.asarray(Image.open(out).convert("RGB"))
    grown = np.zeros_like(inside)
    ys, xs = np.nonzero(inside)
    grown[ys.min() - 3 : ys.max() + 4, xs.min() - 3 : xs.max() + 4] = True  # a 3-px disk stays in this box
    np.testing.assert_array_equal(result[~grown], image[~grown])


def test_remove_as_a_subprocess_on_a_jpeg_keeps_format_and_size(tmp_path):
    image = _photo("coffee", step=2)
    src, mask_path, out = tmp_path / "coffee.jpg", tmp_path / "spoon.png", tmp_path / "clean.jpg"
    Image.fromarray(image).save(src, quality=90)
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[120:165, 163:205] = 255  # the spoon's bowl at 1/2 scale
    Image.fromarray(mask).save(mask_path)
    proc = subprocess.run(
        [sys.executable, "-m", "erasekit", "remove", str(src), "--mask", str(mask_path), "-o", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "patchmatch: wrote" in proc.stderr
    with Image.open(out) as written:
        assert written.format == "JPEG" and written.size == (image.shape[1], image.shape[0])


def test_corrupt_image_is_exit_2_with_one_line(scene, tmp_path, capsys):
    _, _, image_path, mask_path = scene
    broken = tmp_path / "broken.png"
    broken.write_bytes(image_path.read_bytes()[:400])
    assert main(["remove", str(broken), "-m", str(mask_path), "-o", str(tmp_path / "o.png")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("error:") and "broken.png" in line and "corrupt" in line
    assert not (tmp_path / "o.png").exists()


def test_missing_file_is_exit_2(scene, tmp_path, capsys):
    _, _, _, mask_path = scene
    assert (
        main(["remove", str(tmp_path / "nope.jpg"), "-m", str(mask_path), "-o", str(tmp_path / "o.png")]) == 2
    )
    line = _one_error_line(capsys.readouterr().err)
    assert "nope.jpg" in line


def test_mask_size_mismatch_names_both_sizes(scene, tmp_path, capsys):
    image, _, image_path, _ = scene
    small = tmp_path / "small_mask.png"
    Image.fromarray(np.full((50, 60), 255, np.uint8)).save(small)
    assert main(["remove", str(image_path), "-m", str(small), "-o", str(tmp_path / "o.png")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "60×50" in line and f"{image.shape[1]}×{image.shape[0]}" in line


def test_resize_mask_accepts_a_mask_of_another_size(scene, tmp_path):
    _, _, image_path, _ = scene
    small = np.zeros((57, 57), np.uint8)
    small[37:48, 14:24] = 255
    small_path = tmp_path / "small_mask.png"
    Image.fromarray(small).save(small_path)
    out = tmp_path / "o.png"
    assert (
        main(
            ["remove", str(image_path), "-m", str(small_path), "-o", str(out), "--resize-mask", "--method",
             "telea"]
        )
        == 0
    )
    assert out.exists()


def test_unknown_method_is_exit_2_and_lists_the_known_ones(scene, tmp_path, capsys):
    _, _, image_path, mask_path = scene
    assert (
        main(
            ["remove", str(image_path), "-m", str(mask_path), "-o", str(tmp_path / "o.png"), "--method",
             "magic-eraser"]
        )
        == 2
    )
    line = _one_error_line(capsys.readouterr().err)
    assert "unknown method 'magic-eraser'" in line and "patchmatch" in line


def test_full_mask_is_exit_2(scene, tmp_path, capsys):
    image, _, image_path, _ = scene
    full = tmp_path / "full.png"
    Image.fromarray(np.full(image.shape[:2], 255, np.uint8)).save(full)
    assert main(["remove", str(image_path), "-m", str(full), "-o", str(tmp_path / "o.png")]) == 2
    assert "covers the whole image" in _one_error_line(capsys.readouterr().err)


def test_empty_mask_writes_the_input_unchanged(scene, tmp_path, capsys):
    image, _, image_path, _ = scene
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros(image.shape[:2], np.uint8)).save(empty)
    out = tmp_path / "o.png"
    assert main(["remove", str(image_path), "-m", str(empty), "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out).convert("RGB")), image)
    assert "unchanged" in capsys.readouterr().err


def test_pixel_limit_is_exit_4(scene, tmp_path, monkeypatch, capsys):
    _, _, image_path, mask_path = scene
    monkeypatch.setenv("ERASEKIT_MAX_PIXELS", "1000")
    assert main(["remove", str(image_path), "-m", str(mask_path), "-o", str(tmp_path / "o.png")]) == 4
    _one_error_line(capsys.readouterr().err)


@pytest.fixture
def method_without_weights():
    """A registered method whose only weight file is absent, as a user without the checkpoint sees it."""
    name = "needs-weights-test"
    registry.register_method(
        MethodSpec(
            name=name,
            description="test method whose checkpoint is missing",
            factory=lambda: None,
            weights=(
                WeightRequirement(
                    "tiny.ckpt", "a checkpoint", lambda: None, fetch_hint="erasekit download x"
                ),
            ),
            auto_priority=None,
        )
    )
    yield name
    registry._REGISTRY.pop(name)


def test_missing_weights_is_exit_3_with_the_fetch_hint(scene, tmp_path, method_without_weights, capsys):
    _, _, image_path, mask_path = scene
    assert (
        main(
            ["remove", str(image_path), "-m", str(mask_path), "-o", str(tmp_path / "o.png"), "--method",
             method_without_weights]
        )
        == 3
    )
    assert "erasekit download x" in _one_error_line(capsys.readouterr().err)


def test_debug_is_a_global_option_that_prints_the_traceback(scene, tmp_path, capsys):
    _, _, image_path, _ = scene
    broken = tmp_path / "broken.png"
    broken.write_bytes(image_path.read_bytes()[:400])
    assert main(["--debug", "remove", str(broken), "-m", str(image_path), "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "read_image" in err
    assert err.strip().splitlines()[-1].startswith("error:")


def test_methods_lists_patchmatch_as_available(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["methods"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "patchmatch" in line]
    assert rows and "yes" in rows[0].split("│")[2]


def test_demo_command_lists_each_photo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--photos", "camera", "--method", "telea"]) == 0
    stdout = capsys.readouterr().out
    assert "camera" in stdout and "telea" in stdout and (out / "comparison.png").exists()


def test_console_script_help_lists_the_commands():
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "erasekit", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0
    for command in ("remove", "batch", "demo", "methods"):
        assert command in proc.stdout


def test_debug_after_the_subcommand_also_works(scene, tmp_path, capsys):
    _, _, image_path, _ = scene
    broken = tmp_path / "broken.png"
    broken.write_bytes(image_path.read_bytes()[:400])
    assert main(["remove", str(broken), "-m", str(image_path), "-o", str(tmp_path / "o.png"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error_not_an_internal_error(scene, tmp_path, capsys):
    _, _, image_path, mask_path = scene
    assert (
        main(["remove", str(image_path), "-m", str(mask_path), "-o", str(tmp_path / "o.png"), "--bogus"]) == 2
    )
    err = capsys.readouterr().err
    assert "No such option: --bogus" in err and "internal error" not in err


def test_remove_refine_writes_what_the_api_returns_and_changes_only_the_mask(scene, tmp_path):
    image, inside, image_path, mask_path = scene
    for refine in ("poisson", "color-match,poisson"):
        out = tmp_path / "refined.png"
        assert (
            main(
                ["remove", str(image_path), "-m", str(mask_path), "-o", str(out), "--method", "telea",
                 "--refine", refine]
            )
            == 0
        )
        result = np.asarray(Image.open(out).convert("RGB"))
        np.testing.assert_array_equal(result[~inside], image[~inside])
        expected = erasekit.remove(image, inside.astype(np.float32), method="telea", refine=refine)
        np.testing.assert_array_equal(result, expected.image)


def test_unknown_refiner_is_exit_2_and_lists_the_known_ones(scene, tmp_path, capsys):
    _, _, image_path, mask_path = scene
    assert (
        main(
            ["remove", str(image_path), "-m", str(mask_path), "-o", str(tmp_path / "o.png"), "--method",
             "telea", "--refine", "sharpen"]
        )
        == 2
    )
    line = _one_error_line(capsys.readouterr().err)
    assert "unknown refiner 'sharpen'" in line and "color-match, pixperfect, poisson" in line
    assert not (tmp_path / "o.png").exists()


def test_batch_refine_refines_every_image_and_an_unknown_one_stops_it_early(scene, tmp_path, capsys):
    image, inside, image_path, mask_path = scene
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "astronaut.png").write_bytes(mask_path.read_bytes())
    assert (
        main(
            ["batch", str(image_path), "--masks", str(masks), "-o", str(tmp_path / "out"), "--method",
             "telea", "--refine", "color-match", "--no-progress"]
        )
        == 0
    )
    expected = erasekit.remove(image, inside.astype(np.float32), method="telea", refine="color-match")
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "out" / "astronaut.png").convert("RGB")), expected.image
    )
    capsys.readouterr()
    assert (
        main(
            ["batch", str(image_path), "--masks", str(masks), "-o", str(tmp_path / "bad"), "--method",
             "telea", "--refine", "nope", "--no-progress"]
        )
        == 2
    )
    assert "unknown refiner 'nope'" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------------------------------------
# Per-call options: -O KEY=VALUE parsed by the method's declared types, prompts and devices checked alike
# ------------------------------------------------------------------------------------------------------------
class _RecordingRemover(Remover):
    """Fills with black and records the options each call received."""

    name: ClassVar[str] = "recording-test"
    call_options = OptionSet(
        Option("paste_back", bool, default=True, help="paste back"),
        Option("radius", int, default=2, range=Range(1, 8), help="a radius"),
    )
    calls: ClassVar[list[dict]] = []

    def inpaint(self, image, mask, request):
        type(self).calls.append(dict(request.options))
        out = image.copy()
        out[mask > 0] = 0
        return out, None


@pytest.fixture
def recording_method():
    registry.register_method(
        MethodSpec(
            name=_RecordingRemover.name,
            description="records its options",
            factory=_RecordingRemover,
            auto_priority=None,
        )
    )
    _RecordingRemover.calls.clear()
    yield _RecordingRemover
    registry._REGISTRY.pop(_RecordingRemover.name)


@pytest.mark.parametrize(
    "text, expected",
    [("False", False), ("false", False), ("no", False), ("NO", False), ("0", False), ("off", False),
     ("True", True), ("yes", True), ("1", True), ("on", True)],
)
def test_option_values_are_parsed_by_the_declared_type(scene, tmp_path, recording_method, text, expected):
    _, _, image_path, mask_path = scene
    assert (
        main(
            ["remove", str(image_path), "-m", str(mask_path), "-o", str(tmp_path / "o.png"), "--method",
             recording_method.name, "-O", f"paste_back={text}", "-O", "radius=3"]
        )
        == 0
    )
    assert recording_method.calls == [{"paste_back": expected, "radius": 3}]


@pytest.mark.parametrize(
    "item, needle",
    [
        (
            "paste_back=maybe",
            (
                "recording-test option paste_back must be a boolean (true/false, yes/no, on/off, "
                "1/0), got 'maybe'"
            ),
        ),
        ("radius=9", "recording-test option radius must be an integer in [1, 8], got '9'"),
        ("radius=2.5", "recording-test option radius must be an integer in [1, 8], got '2.5'"),
        ("bogus=1", "method 'recording-test' does not take option(s): bogus; it takes: paste_back, radius"),
    ],
)
def test_bad_option_values_are_exit_2_naming_the_range(
    scene, tmp_path, recording_method, capsys, item, needle
):
    _, _, image_path, mask_path = scene
    assert (
        main(
            ["remove", str(image_path), "-m", str(mask_path), "-o", str(tmp_path / "o.png"), "--method",
             recording_method.name, "-O", item]
        )
        == 2
    )
    assert needle in _one_error_line(capsys.readouterr().err)
    assert not recording_method.calls and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("method", CLASSICAL)
def test_prompt_to_a_method_that_ignores_it_is_refused_like_steps(scene, tmp_path, method, capsys):
    _, _, image_path, mask_path = scene
    args = ["remove", str(image_path), "-m", str(mask_path), "-o", str(tmp_path / "o.png"), "--method",
            method]
    assert main([*args, "--steps", "4"]) == 2
    assert f"method {method!r} does not take option(s): steps" in _one_error_line(capsys.readouterr().err)
    assert main([*args, "--prompt", "a brick wall"]) == 2
    assert f"method {method!r} takes no prompt" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "method, item, needle",
    [
        ("telea", "radius=0", "telea option radius must be an integer in [1, 64], got '0'"),
        (
            "patchmatch",
            "patch_size=33",
            "patchmatch option patch_size must be an integer in [1, 32], got '33'",
        ),
        (
            "sd15-inpaint",
            "steps=1001",
            "sd15-inpaint option steps must be an integer in [1, 1000], got '1001'",
        ),
        ("sd15-inpaint", "strength=0", "sd15-inpaint option strength must be a number in (0, 1], got '0'"),
        (
            "sdxl-inpaint",
            "guidance=-1",
            "sdxl-inpaint option guidance must be a number in [0, 100], got '-1'",
        ),
        (
            "osor-sdxl",
            "timestep=1000",
            "osor-sdxl option timestep must be an integer in [0, 999], got '1000'",
        ),
        ("osor-flux", "blend=soft", "osor-flux option blend must be one of alpha, mask, got 'soft'"),
        ("sd15-inpaint", "progress=print", "sd15-inpaint option progress can only be set from Python"),
    ],
)
def test_out_of_range_options_are_exit_2_before_any_model_loads(
    scene, tmp_path, capsys, method, item, needle
):
    # No weights are on this machine for the diffusion methods: the option is refused before loading is tried.
    _, _, image_path, mask_path = scene
    assert (
        main(
            ["remove", str(image_path), "-m", str(mask_path), "-o", str(tmp_path / "o.png"), "--method",
             method, "-O", item]
        )
        == 2
    )
    assert needle in _one_error_line(capsys.readouterr().err)


def test_unknown_device_is_exit_2_with_the_devices_erasekit_knows(scene, tmp_path, tiny, capsys):
    _, _, image_path, mask_path = scene
    model = str(tiny("sd15-inpaint"))
    capsys.readouterr()  # writing the tiny checkpoint is not the command's output
    for device in ("tpu", "xla"):  # torch parses 'xla', but erasekit places pipelines on cpu/cuda/mps only
        assert (
            main(
                ["remove", str(image_path), "-m", str(mask_path), "-o", str(tmp_path / "o.png"), "--method",
                 "sd15-inpaint", "--model", model, "--device", device]
            )
            == 2
        )
        assert f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps" in _one_error_line(
            capsys.readouterr().err
        )


def test_methods_options_shows_type_range_default_and_help(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["methods", "--options", "telea"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "radius" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[:4] == ["radius", "int", "an integer in [1, 64]", "5"] and "neighbourhood" in cells[4]
    assert main(["methods", "--options", "osor-sdxl"]) == 0
    out = capsys.readouterr().out
    assert "takes no prompt" in out and "the weights' training timestep" in out and "[0, 999]" in out
    assert main(["methods", "--options", "no-such-method"]) == 2


def test_methods_options_imports_no_torch():
    code = (
        "import sys; from erasekit.cli import main; main(['methods', '--options', 'osor-flux']); "
        "assert not {'torch', 'diffusers', 'transformers'} & set(sys.modules), 'heavy import'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
