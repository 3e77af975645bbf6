"""Mistakes a newcomer makes, answered as bad input (exit 2, one line) losing nothing; Ctrl+C; quiet output.

Issue 19: a forgotten mask, overwriting the input, unwritable outputs, a locked batch folder, huge images,
options checked alike for every method, Ctrl+C during a native fill, library noise, typo suggestions, modes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

import erasekit
from erasekit import MaskOrPromptError, batch
from erasekit.cli import main
from erasekit.options import Option
from erasekit.registry import check_call, get_method
from erasekit.types import MASK_OR_PROMPT

SRC = str(Path(erasekit.__file__).resolve().parents[1])


@pytest.fixture
def scene(tmp_path: Path):
    image = np.ascontiguousarray(skimage.data.astronaut()[::4, ::4])
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[84:108, 32:54] = 255
    image_path, mask_path = tmp_path / "astronaut.png", tmp_path / "astronaut_mask.png"
    Image.fromarray(image).save(image_path)
    Image.fromarray(mask).save(mask_path)
    return image_path, mask_path


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ---- 4. a forgotten mask -----------------------------------------------------------------------------------
def test_a_forgotten_mask_is_bad_input_saying_to_give_a_mask_or_a_prompt(scene, tmp_path, capsys):
    image_path, _ = scene
    out = tmp_path / "out.png"
    assert main(["remove", str(image_path), "-o", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert MASK_OR_PROMPT in line and "download" not in line
    assert not out.exists()


def test_a_prompt_without_a_mask_names_the_weights_it_needs_not_pypatchmatch(scene, tmp_path, capsys):
    """A prompt is a way to say what to remove (text -> mask, or magicremover): when neither has weights here,
    the answer is the missing-weights error naming their fetch commands (issue 17), never "install
    pypatchmatch" (issue 19, item 4)."""
    image_path, _ = scene
    out = tmp_path / "out.png"
    assert main(["remove", str(image_path), "-o", str(out), "--prompt", "the astronaut"]) == 3
    line = _one_line(capsys.readouterr().err)
    assert "hf download facebook/sam3" in line and "erasekit download sd15" in line
    assert "pypatchmatch" not in line
    assert not out.exists()


def test_the_python_api_raises_the_bad_input_error_the_server_answers_422(scene):
    image_path, _ = scene
    with pytest.raises(MaskOrPromptError) as caught:
        erasekit.remove(image_path, None)
    assert caught.value.exit_code == 2 and caught.value.http_status == 422
    with pytest.raises(MaskOrPromptError, match="method 'telea' needs a mask"):
        erasekit.load_remover("telea")(
            erasekit.RemovalRequest(image=np.zeros((16, 16, 3), np.uint8), mask=None)
        )


# ---- 5. overwriting the input ------------------------------------------------------------------------------
def test_remove_refuses_to_overwrite_its_input_unless_told(scene, capsys):
    image_path, mask_path = scene
    before = image_path.read_bytes()
    assert main(["remove", str(image_path), "-m", str(mask_path), "-o", str(image_path)]) == 2
    assert "--overwrite" in _one_line(capsys.readouterr().err)
    assert image_path.read_bytes() == before
    same = image_path.parent / "." / image_path.name  # another spelling of the same file
    assert main(["remove", str(image_path), "-m", str(mask_path), "-o", str(same), "--method", "telea"]) == 2
    assert (
        main(
            [
                "remove",
                str(image_path),
                "-m",
                str(mask_path),
                "-o",
                str(image_path),
                "--method",
                "telea",
                "--overwrite",
            ]
        )
        == 0
    )
    assert image_path.read_bytes() != before


def _photo_folder(tmp_path: Path, names=("a", "b")) -> tuple[Path, Path]:
    photos, masks = tmp_path / "in", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    image = np.ascontiguousarray(skimage.data.astronaut()[::8, ::8])
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[20:30, 20:30] = 255
    for name in names:
        Image.fromarray(image).save(photos / f"{name}.png")
        Image.fromarray(mask).save(masks / f"{name}.png")
    return photos, masks


def _batch_telea(source: Path, masks: Path, out: Path, *extra: str) -> int:
    return main(["batch", str(source), "--masks", str(masks), "-o", str(out), "--method", "telea",
                 "--no-progress", *extra])


def test_batch_into_the_photo_folder_is_refused_and_writes_nothing_there(tmp_path, capsys):
    photos, masks = _photo_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    code = _batch_telea(photos / "*", masks, photos)
    assert code == 2
    assert "holds 2 of the input photos" in _one_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before  # no report, no lock file


def test_batch_in_place_replaces_the_photos_with_their_results(tmp_path):
    photos, masks = _photo_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    code = _batch_telea(photos / "*.png", masks, photos, "--in-place")
    assert code == 0
    records = batch.read_report(photos / batch.REPORT_NAME)
    assert [r.status for r in records] == ["ok", "ok"]
    assert all((photos / name).read_bytes() != data for name, data in before.items())


# ---- 6. ordinary user errors exit 2 ------------------------------------------------------------------------
def test_an_unwritable_output_is_exit_2(scene, capsys):
    image_path, mask_path = scene
    assert (
        main(
            [
                "remove",
                str(image_path),
                "-m",
                str(mask_path),
                "-o",
                "/proc/erasekit-x.png",
                "--method",
                "telea",
            ]
        )
        == 2
    )
    assert "cannot write '/proc/erasekit-x.png'" in _one_line(capsys.readouterr().err)


def test_demo_into_an_existing_file_is_exit_2(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main(["demo", "--out", str(afile), "--photos", "camera", "--method", "telea"]) == 2
    assert "is an existing file" in _one_line(capsys.readouterr().err)
    assert afile.read_text() == "mine"


def test_a_second_batch_into_a_locked_folder_is_exit_2(tmp_path, capsys):
    import fcntl

    photos, masks = _photo_folder(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / batch.LOCK_NAME, "a+") as held:  # a first batch holds the folder
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = _batch_telea(photos, masks, out)
    assert code == 2
    assert "another erasekit batch is writing to" in _one_line(capsys.readouterr().err)


# ---- 7. huge images ----------------------------------------------------------------------------------------
def test_a_huge_png_header_names_erasekit_max_pixels(tmp_path, capsys):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    huge = tmp_path / "huge.png"  # a 20000×20000 header; the pixels are never decoded
    huge.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    mask = tmp_path / "m.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mask)
    assert main(["remove", str(huge), "-m", str(mask), "-o", str(tmp_path / "o.png")]) == 4
    assert "ERASEKIT_MAX_PIXELS" in _one_line(capsys.readouterr().err)


# ---- 8. Ctrl+C during a native fill ------------------------------------------------------------------------
def test_ctrl_c_during_a_patchmatch_fill_takes_effect_at_once_and_says_interrupted(tmp_path):
    pytest.importorskip("patchmatch")
    image = np.tile(skimage.data.astronaut(), (4, 4, 1))  # 2048×2048: the fill runs tens of seconds
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[400:1600, 400:1600] = 255
    Image.fromarray(image).save(tmp_path / "big.png")
    Image.fromarray(mask).save(tmp_path / "big_mask.png")
    out = tmp_path / "out.png"
    # "ready" once erasekit is imported; the image read that follows takes well under the 3 s we wait.
    code = (
        "import sys; from erasekit.cli import main; print('ready', flush=True); sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "remove",
            str(tmp_path / "big.png"),
            "-m",
            str(tmp_path / "big_mask.png"),
            "-o",
            str(out),
            "--method",
            "patchmatch",
            "--hd-strategy",
            "original",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(3)
        assert proc.poll() is None, "the fill finished before Ctrl+C: make the image larger"
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        waited = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert waited < 10, f"Ctrl+C took {waited:.1f} s"  # it took 23 s when the fill held the main thread
    assert not out.exists()


# ---- 9. options checked alike ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "device, needle",
    [
        ("tpu", "unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
        ("cuda:x", "unknown device 'cuda:x'"),
    ],
)
def test_an_unknown_device_is_refused_for_every_method_also_the_classical_ones(
    scene, tmp_path, capsys, device, needle
):
    image_path, mask_path = scene
    for method in ("auto", "telea"):
        assert (
            main(
                [
                    "remove",
                    str(image_path),
                    "-m",
                    str(mask_path),
                    "-o",
                    str(tmp_path / "o.png"),
                    "--method",
                    method,
                    "--device",
                    device,
                ]
            )
            == 2
        )
        assert needle in _one_line(capsys.readouterr().err)


def test_a_cpu_only_method_accepts_device_cpu_and_says_why_it_refuses_a_gpu(
    scene, tmp_path, capsys, monkeypatch
):
    import torch

    image_path, mask_path = scene
    args = [
        "remove",
        str(image_path),
        "-m",
        str(mask_path),
        "-o",
        str(tmp_path / "o.png"),
        "--method",
        "telea",
    ]
    assert main([*args, "--device", "cpu"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    assert main([*args, "--device", "cuda"]) == 2
    assert "method 'telea' runs on the CPU only: drop --device cuda" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "text, expected",
    [("False", False), ("no", False), ("off", False), ("0", False), ("true", True), ("yes", True)],
)
def test_paste_back_text_is_read_as_a_boolean_by_the_osor_declaration(text, expected):
    for method in ("osor-sdxl", "osor-flux"):
        assert check_call(get_method(method), {"paste_back": text}, from_python=False) == {
            "paste_back": expected
        }


def test_the_prompt_is_refused_by_a_method_that_ignores_it(scene, tmp_path, capsys):
    image_path, mask_path = scene
    assert (
        main(
            [
                "remove",
                str(image_path),
                "-m",
                str(mask_path),
                "-o",
                str(tmp_path / "o.png"),
                "--method",
                "telea",
                "--prompt",
                "a wall",
            ]
        )
        == 2
    )
    assert "method 'telea' takes no prompt" in _one_line(capsys.readouterr().err)


def test_max_steps_below_one_is_refused_before_the_config_loads(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "osor",
                "--config",
                "osor_sdxl_phase1",
                "--max-steps",
                "-5",
                "--output-dir",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    assert "--max-steps" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_every_training_command_in_the_readme_and_docs_names_a_config_that_exists():
    import re

    from erasekit.methods.eradiff.train.config import packaged_config as eradiff_config
    from erasekit.methods.osor.train.config import packaged_config as osor_config
    from erasekit.refiners.pixperfect.train.config import packaged_config as pixperfect_config
    from erasekit.training.config import config_path

    packaged = {"osor": osor_config, "eradiff": eradiff_config, "pixperfect": pixperfect_config}
    root = Path(__file__).resolve().parents[1]
    found = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for kind, name in re.findall(
            r"erasekit train (osor|eradiff|pixperfect) (?:--config|-c) ([\w./-]+)", page.read_text()
        ):
            if name.isupper() or name.startswith(("CONFIG", "my", "path")):
                continue  # a placeholder for the user's own file
            found.append((page.name, name))
            assert config_path(name, packaged[kind]).is_file(), (page.name, name)
    assert ("README.md", "osor_sdxl_phase1") in found


# ---- 10. quiet by default ----------------------------------------------------------------------------------
def test_a_diffusion_call_prints_no_library_noise_unless_verbose(tmp_path, tiny, capsys, monkeypatch):
    image = np.ascontiguousarray(skimage.data.astronaut()[::8, ::8])  # 64×64: the tiny model's size
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[20:40, 20:40] = 255
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    model = str(tiny("sd15-inpaint"))
    capsys.readouterr()
    args = [
        "remove",
        str(tmp_path / "a.png"),
        "-m",
        str(tmp_path / "m.png"),
        "-o",
        str(tmp_path / "o.png"),
        "--method",
        "sd15-inpaint",
        "--model",
        model,
        "--steps",
        "1",
    ]
    # A fresh process, as a user runs it: the libraries are imported (and log) inside the command.
    env = {**os.environ, "PYTHONPATH": SRC}
    for key in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        env.pop(key, None)
    quiet = subprocess.run(
        [sys.executable, "-m", "erasekit", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert quiet.returncode == 0, quiet.stderr
    noise = ("torchvision", "float32: []", "Loading pipeline components", "Loading weights")
    assert not [n for n in noise if n in quiet.stderr + quiet.stdout], quiet.stderr
    assert "sd15-inpaint: wrote" in quiet.stderr
    monkeypatch.setattr(erasekit, "_cache", {})  # load anew, as the fresh process did
    assert main(["--verbose", *args, "--seed", "1"]) == 0  # in this process: the loading bar is drawn
    assert "Loading pipeline components" in capsys.readouterr().err


def test_quiet_libraries_restores_what_it_changed():
    from erasekit.cli.quiet import quiet_libraries

    transformers_logging = pytest.importorskip("transformers.utils.logging")
    level = transformers_logging.get_verbosity()
    before = {k: os.environ.get(k) for k in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY")}
    with quiet_libraries():
        assert transformers_logging.get_verbosity() == transformers_logging.ERROR
    assert transformers_logging.get_verbosity() == level
    assert {k: os.environ.get(k) for k in before} == before


# ---- 12. cosmetic ------------------------------------------------------------------------------------------
def test_a_typo_is_offered_only_options_that_look_like_it(scene, tmp_path, capsys):
    image_path, mask_path = scene
    args = ["remove", str(image_path), "-m", str(mask_path), "-o", str(tmp_path / "o.png")]
    assert main([*args, "--colour", "red"]) == 2
    err = capsys.readouterr().err
    assert "No such option: --colour" in err and "--out" not in err.split("No such option")[1]
    assert main([*args, "--mehtod", "telea"]) == 2
    assert "(Possible options: --method)" in capsys.readouterr().err


def test_usage_lines_name_the_argument_in_capitals(capsys):
    assert main(["remove"]) == 2
    err = capsys.readouterr().err
    assert " remove [OPTIONS] IMAGE\n" in err and "{" not in err


def _commands(group, path=("erasekit",)):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_no_usage_line_puts_braces_around_an_argument():
    """typer 0.29 writes required arguments as {IMAGE}; every erasekit command writes them as click does:
    IMAGE, IMAGES..., [NAME] (erasekit.cli.usage)."""
    import typer

    from erasekit.cli.main import app

    root = typer.main.get_command(app)
    usages = {}
    for path, command in _commands(root):
        ctx = command.make_context(path[-1], ["--help"], resilient_parsing=True)
        usages[" ".join(path[1:])] = command.get_usage(ctx)
    assert len(usages) > 15
    assert not [u for u in usages.values() if "{" in u or "}" in u]
    assert usages["remove"].endswith("[OPTIONS] IMAGE")
    assert usages["batch"].endswith("[OPTIONS] IMAGES...")
    assert usages["data eradiff-pairs"].endswith("[OPTIONS] IMAGES...")


def test_demo_summary_json_gets_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["demo", "--out", str(tmp_path / "d"), "--photos", "camera", "--method", "telea"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "d" / "summary.json").stat().st_mode & 0o777 == 0o644


def test_boolean_option_declarations_read_no_as_false():
    flag = Option("flag", bool, "a flag", default=True)
    assert [flag.check(t, owner="m") for t in ("False", "no", "off", "0")] == [False] * 4
