"""Static report of a benchmark results folder.

``report/index.html`` with comparison grids and bar charts (PNG). Grids (one PNG per sample and mask
setting): input, mask, each method's output, the ground truth, and each method's alpha when it differs from
the mask it was given (effect-aware methods). Charts: one matplotlib bar chart per metric, methods grouped by
mask setting. Everything is read back from the results folder, so a report can be rebuilt without rerunning
anything.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..convert import mask_to_uint8
from ..types import InvalidInputError
from .datasets import open_dataset
from .runner import table_markdown

TILE = 192


def _tile(image: np.ndarray, caption: str) -> Image.Image:
    im = Image.fromarray(image if image.ndim == 3 else np.stack([image] * 3, -1))
    im.thumbnail((TILE, TILE))
    canvas = Image.new("RGB", (TILE, TILE + 16), "white")
    canvas.paste(im, ((TILE - im.width) // 2, 16 + (TILE - im.height) // 2))
    ImageDraw.Draw(canvas).text((3, 2), caption[:30], fill="black")
    return canvas


def _grid(tiles: list[Image.Image]) -> Image.Image:
    out = Image.new("RGB", (TILE * len(tiles), TILE + 16), "white")
    for i, t in enumerate(tiles):
        out.paste(t, (i * TILE, 0))
    return out


def _bar_charts(summary: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(summary["runs"].values())
    methods = list(dict.fromkeys(r["method"] for r in runs))
    modes = list(dict.fromkeys(r["mask"] for r in runs))
    columns = [c for m in summary["metrics"].values() if m["available"] for c in m["columns"]] + ["latency_s"]
    paths = []
    for col in columns:
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(methods), 3.0))
        width = 0.8 / max(len(modes), 1)
        plotted = False
        for j, mode in enumerate(modes):
            vals = [summary["runs"].get(f"{m}/{mode}", {}).get("values", {}).get(col) for m in methods]
            xs = [i + j * width for i in range(len(methods))]
            heights = [v if v is not None and np.isfinite(v) else 0.0 for v in vals]
            plotted |= any(v is not None for v in vals)
            ax.bar(xs, heights, width=width, label=f"{mode} mask")
        if not plotted:
            plt.close(fig)
            continue
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(methods))], methods, rotation=20, fontsize=8)
        ax.set_title(col)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"chart_{col.replace('@', '_at_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def build_report(results: str | Path, *, max_samples: int = 8) -> Path:
    """Write ``RESULTS/report/index.html`` (+ PNGs) from a results folder; returns the HTML path."""
    from .runner import _output_paths

    results = Path(results)
    summary_path = results / "summary.json"
    if not summary_path.is_file():
        raise InvalidInputError(f"'{results}' has no summary.json (run `erasekit bench` first)")
    summary = json.loads(summary_path.read_text())
    out = results / "report"
    out.mkdir(exist_ok=True)
    cfg = summary["config"]
    dataset = open_dataset(summary["dataset"]["path"], cfg.get("layout", "auto"))
    methods = list(dict.fromkeys(r["method"] for r in summary["runs"].values()))
    modes = list(dict.fromkeys(r["mask"] for r in summary["runs"].values()))

    grids = []
    for sample_id in dataset.ids[:max_samples]:
        record = dataset[sample_id]
        for mode in modes:
            mask = record.mask(mode)
            tiles = [_tile(record.image, f"input {sample_id}"), _tile(mask_to_uint8(mask), f"{mode} mask")]
            alphas = []
            for method in methods:
                image_path, alpha_path, _ = _output_paths(results, method, mode, sample_id)
                if not image_path.is_file():
                    continue
                tiles.append(_tile(np.asarray(Image.open(image_path).convert("RGB")), method))
                if alpha_path.is_file():
                    alpha = np.asarray(Image.open(alpha_path).convert("L"))
                    if not np.array_equal(alpha > 127, mask > 0.5):
                        alphas.append(_tile(alpha, f"alpha {method}"))
            if record.background is not None:
                tiles.append(_tile(record.background, "ground truth"))
            path = out / f"grid_{sample_id}_{mode}.png"
            _grid(tiles + alphas).save(path)
            grids.append(path)

    charts = _bar_charts(summary, out)
    columns = [c for m in summary["metrics"].values() for c in m["columns"]]
    table = table_markdown(summary, columns)
    settings = {
        n: {"settings": m["settings"], "weights": m["weights"], "unavailable": m["unavailable"]}
        for n, m in summary["metrics"].items()
    }
    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>erasekit benchmark</title>",
        (
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}img{max-width:100%}"
            "</style></head><body>"
        ),
        (
            f"<h1>erasekit benchmark — {html.escape(summary['dataset']['layout'])} "
            f"({summary['dataset']['n']} images)</h1>"
        ),
        "<h2>Results</h2>",
        _markdown_table_to_html(table),
        "<h2>Charts</h2>",
        *[f"<img src='{p.name}' alt='{p.stem}'>" for p in charts],
        "<h2>Comparisons</h2>",
        *[f"<p>{p.stem}</p><img src='{p.name}' alt='{p.stem}'>" for p in grids],
        "<h2>Metric settings and weights</h2><pre>",
        html.escape(json.dumps(settings, indent=1, default=str)),
        "</pre><h2>Conventions</h2><pre>",
        html.escape(json.dumps(summary["conventions"], indent=1)),
        "</pre>",
        "</body></html>",
    ]
    index = out / "index.html"
    index.write_text("\n".join(body), encoding="utf-8")
    return index


def _markdown_table_to_html(text: str) -> str:
    lines = text.strip().splitlines()
    rows = [
        line.strip("|").split("|") for line in lines if line.startswith("|") and not line.startswith("|---")
    ]
    notes = [line[2:] for line in lines if line.startswith("- ")]
    out = ["<table>"]
    for i, cells in enumerate(rows):
        tag = "th" if i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{html.escape(c.strip())}</{tag}>" for c in cells) + "</tr>")
    out.append("</table><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(out)
