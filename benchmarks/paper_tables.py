"""Run the five paper presets (``erasekit bench --preset ...``) end to end on generated data.

**These tables show that the commands work, not results.** The dataset is ``erasekit synth`` scenes (64 px,
a handful), every method runs on *tiny random weights* from ``erasekit.testing.write_tiny_weights``, and the
metric networks are *random* too: the FID/IDS Inception has the real architecture with random weights, LPIPS
a random AlexNet trunk with the lpips package's heads when installed, CMMD and CLIP tiny random CLIP models.
CFD (SAM + DINOv2) stays unavailable. Rows erasekit does not implement print "—".

    python benchmarks/paper_tables.py                 # all five, 4 scenes (~10 minutes on 2 CPU cores)
    python benchmarks/paper_tables.py --presets pixperfect-table2 --scenes 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from erasekit.data.synthetic import generate_synthetic_dataset
from erasekit.eval.features import Loaded
from erasekit.eval.networks import AlexNetTrunk, FIDInceptionV3
from erasekit.eval.presets import PRESETS, preset_table
from erasekit.eval.runner import BenchConfig, run_benchmark
from erasekit.testing import write_tiny_weights

# Few denoising steps: the tables check the plumbing, not quality.
CALL_OPTIONS = {
    "flux-fill": {"steps": 2}, "sdxl-inpaint": {"steps": 2}, "sd2-inpaint": {"steps": 2},
    "sd15-inpaint": {"steps": 2}, "clipaway": {"steps": 2}, "eradiff": {"steps": 2},
    "magicremover": {"steps": 3, "inner_steps": 2},
}


def tiny_metric_networks(folder: Path) -> tuple[dict[str, Loaded], dict[str, str]]:
    """Random metric networks of the real architectures (preloaded or as weight files)."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    from erasekit.testing.pipelines import _clip_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    inception = FIDInceptionV3().eval()
    for parameter in inception.parameters():  # its default init gives features ~1e-8; He init is alive
        if parameter.ndim == 4:
            torch.nn.init.kaiming_normal_(parameter)
    networks = {"inception-fid": Loaded(inception, [], {})}
    trunk = folder / "alexnet.pth"
    torch.save({k: torch.randn(v.shape) * 0.05 for k, v in AlexNetTrunk().state_dict().items()}, trunk)
    vision = folder / "clip-l14"
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, projection_dim=16)).save_pretrained(vision)
    tok = _clip_tokenizer()
    full = folder / "clip-b32"
    CLIPModel(CLIPConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 37,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77,
                     "bos_token_id": len(tok) - 2, "eos_token_id": len(tok) - 1,
                     "pad_token_id": len(tok) - 1},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        projection_dim=16)).save_pretrained(full)
    tok.save_pretrained(full)
    return networks, {"alexnet": str(trunk), "clip-vit-l14-336": str(vision), "clip-vit-b32": str(full)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--render", action="store_true",
                        help="only print the tables of runs already in --work (from their summary.json)")
    args = parser.parse_args(argv)
    if args.render:
        import json

        for name in args.presets:
            summary = args.work / name / "summary.json"
            if summary.is_file():
                label = ("erasekit synth data, 64 px; tiny random weights for the methods and the metric "
                         "networks: these numbers test the command, they are not results")
                print(preset_table(PRESETS[name], json.loads(summary.read_text()), label=label))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="paper-tables-"))
    dataset = generate_synthetic_dataset(work / "scenes", args.scenes, size=64, seed=0)
    networks, metric_weights = tiny_metric_networks(work / "metric-weights")
    load: dict[str, dict] = {}
    for preset_name in args.presets:
        preset = PRESETS[preset_name]
        entries = preset.entries()
        bases = {entries[m].method if m in entries else m for m in preset.methods}
        for method in sorted(bases | ({"pixperfect"} if preset_name == "pixperfect-table2" else set())):
            if method not in load:
                load[method] = write_tiny_weights(method, work / "weights")
                if method == "magicremover":
                    load[method]["resolution"] = 64  # its working size (a load option)
        t0 = time.perf_counter()
        cfg = BenchConfig(
            dataset=str(dataset), out=str(work / preset_name), methods=preset.methods, mask=preset.mask,
            metrics=list(preset.metrics), layout="paired", load_options=load, call_options=CALL_OPTIONS,
            weights=metric_weights, progress=False, trace_python_memory=False,
            entries=preset.entries(load),
        )
        result = run_benchmark(cfg, networks=networks)
        label = (f"erasekit synth data, {args.scenes} scenes at 64 px; tiny random weights for the methods "
                 f"and the metric networks: these numbers test the command, they are not results "
                 f"({time.perf_counter() - t0:.0f} s)")
        print(preset_table(preset, result.summary, label=label))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
