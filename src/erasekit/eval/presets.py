"""Each paper's main table from one command: ``erasekit bench --preset NAME``.

A preset names the table's rows in the paper's order (each a :class:`~.entries.BenchEntry`, or None for a
method erasekit does not implement, printed "—"), the paper's metric set and column order, the mask setting,
and the dataset the paper evaluates on with the adapter that reads it (docs/evaluation.md). The benchmark runs
as usual (cached outputs, per-image CSV, summary); :func:`preset_table` prints the paper's layout from its
summary. A metric whose weights are missing prints "n/a" and is listed with its reason; so is a method whose
weights are missing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..types import InvalidInputError
from .entries import BenchEntry


@dataclass(frozen=True)
class PresetRow:
    label: str  # as the paper prints it
    name: str | None = None  # the bench row (results folder); None: not implemented in erasekit
    entry: BenchEntry | None = None  # what the row runs when it is more than its method


@dataclass(frozen=True)
class PresetColumn:
    header: str  # as the paper prints it
    column: str  # the bench column (latency_s, fid, clip_acc@1, ...)
    mask: str = "object"


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    paper: str
    datasets: str  # what the paper evaluates on, and the --layout that reads it
    layout: str
    mask: str  # object | effect | both
    metrics: tuple[str, ...]
    rows: tuple[PresetRow, ...]
    columns: tuple[PresetColumn, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def methods(self) -> list[str]:
        return [r.name for r in self.rows if r.name is not None]

    def entries(self, refiner_options: dict[str, dict[str, Any]] | None = None) -> dict[str, BenchEntry]:
        """Row name -> entry, with each refiner's options (``{"pixperfect": {"weights": DIR}}``) filled in."""
        out = {}
        for row in self.rows:
            if row.name is None or row.entry is None:
                continue
            entry = row.entry
            if entry.refine is not None:
                opts = (refiner_options or {}).get(entry.refine, {})
                refine = ":".join([entry.refine, *(f"{k}={v}" for k, v in opts.items())])
                entry = dataclasses.replace(entry, refine=refine)
            out[row.name] = entry
        return out


def _cols(spec: tuple[tuple[str, str], ...], mask: str = "object") -> tuple[PresetColumn, ...]:
    return tuple(PresetColumn(header, column, mask) for header, column in spec)


_OSOR_METRICS = (("FID↓", "fid"), ("CMMD↓", "cmmd"), ("LPIPS↓", "lpips"), ("PSNR↑", "psnr"),
                 ("SSIM↑", "ssim"), ("CFD↓", "cfd"))
_MAGIC_PROMPT = BenchEntry("magicremover", prompt="a photo of a {label}", label_options=("target",))

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "osor-table1",
            "OSOR Table 1: paired-background benchmarks, object-only and object-effect masks",
            "OSOR, arXiv:2606.28094",
            "CORNE-Val (--layout corne) and RORD-Val (--layout rord); one run per dataset",
            "auto",
            "both",
            ("fid", "cmmd", "lpips", "psnr", "ssim", "cfd"),
            (
                PresetRow("OmniPaint"), PresetRow("ObjectClear"), PresetRow("AttentiveEraser"),
                PresetRow("FLUX-Fill", "flux-fill"), PresetRow("OmniEraser"),
                PresetRow("SDXL-INP", "sdxl-inpaint"), PresetRow("CLIPAway", "clipaway"),
                PresetRow("OSOR(SDXL)", "osor-sdxl"), PresetRow("OSOR(FLUX)", "osor-flux"),
            ),
            (PresetColumn("Latency (s)", "latency_s"),
             *(PresetColumn(f"{h} obj", c, "object") for h, c in _OSOR_METRICS),
             *(PresetColumn(f"{h} obj+eff", c, "effect") for h, c in _OSOR_METRICS)),
        ),
        Preset(
            "eradiff-table1",
            "EraDiff Table 1: erase inpainting on OpenImages V5",
            "EraDiff, arXiv:2503.07026",
            "OpenImages V5 validation, instance segmentation masks (--layout openimages)",
            "openimages",
            "object",
            ("fid", "lpips", "local_fid"),
            (
                PresetRow("SD2-Inpaint", "sd2-inpaint"), PresetRow("SD2-Inpaint*"), PresetRow("PowerPaint"),
                PresetRow("Inst-Inpaint"), PresetRow("LaMa", "lama"), PresetRow("EraDiff (ours)", "eradiff"),
            ),
            _cols((("FID↓", "fid"), ("LPIPS↓", "lpips"), ("Local FID↓", "local_fid"))),
            ("SD2-Inpaint* (with prompt guidance) is not run: the paper does not give its prompt",),
        ),
        Preset(
            "clipaway-table1",
            "CLIPAway Table 1: object removal on COCO 2017 val",
            "CLIPAway, arXiv:2406.09368",
            "COCO val2017 instances, masks dilated with a 5×5 kernel (--layout coco-dilate5)",
            "coco-dilate5",
            "object",
            ("fid", "cmmd", "clip"),
            (
                PresetRow("ZITS++"), PresetRow("MAT"), PresetRow("LaMa", "lama"),
                PresetRow("Blended Diff."),
                PresetRow("+ CLIPAway"), PresetRow("Unipaint"), PresetRow("+ CLIPAway"),
                PresetRow("SD-Inpaint", "sd15-inpaint"), PresetRow("+ CLIPAway", "clipaway"),
            ),
            _cols((("FID↓", "fid"), ("CMMD↓", "cmmd"), ("CLIP Dist.↑", "clip_dist"),
                   ("CLIP@1↑", "clip_acc@1"), ("CLIP@3↑", "clip_acc@3"), ("CLIP@5↑", "clip_acc@5"))),
            ("CLIP@k here is a fraction; the paper prints percentages",),
        ),
        Preset(
            "pixperfect-table2",
            "PixPerfect Table 2: object removal on RORDS",
            "PixPerfect, NeurIPS 2025",
            "RORDS, the RORD test pairs with clean backgrounds (--layout rord)",
            "rord",
            "object",
            ("fid", "lpips", "l1", "psnr"),
            (
                PresetRow("BrushNet"), PresetRow("+ PixPerfect"),
                PresetRow("CLIPAway", "clipaway"),
                PresetRow("+ PixPerfect", "clipaway+pixperfect", BenchEntry("clipaway", refine="pixperfect")),
                PresetRow("PowerPaint"), PresetRow("+ PixPerfect"),
                PresetRow("OmniPaint"), PresetRow("+ PixPerfect"),
            ),
            _cols((("FID↓", "fid"), ("LPIPS↓", "lpips"), ("L1↓", "l1"), ("PSNR↑", "psnr"))),
            ("Outputs of other tools can be refined with `erasekit refine` and scored as a paired dataset",),
        ),
        Preset(
            "magicremover-table1",
            "MagicRemover Table 1: FID on COCO 2017 val",
            "MagicRemover, arXiv:2310.02848",
            "COCO val2017 instances with their annotated masks (--layout coco)",
            "coco",
            "object",
            ("fid",),
            (
                PresetRow("SD-Inpaint", "sd15-inpaint"), PresetRow("LaMa", "lama"),
                PresetRow("MagicRemover w mask", "magicremover-mask", _MAGIC_PROMPT),
                PresetRow("Inst-Inpaint"),
                PresetRow(
                    "MagicRemover w/o mask",
                    "magicremover-nomask",
                    BenchEntry("magicremover", prompt="a photo of a {label}", label_options=("target",),
                               withhold_mask=True),
                ),
            ),
            _cols((("FID", "fid"),)),
            (
                ("MagicRemover rows: prompt 'a photo of a {label}', target {label} (the sample's class; the "
                "paper does not give its prompts)"),
                "the paper's User Study column is not a metric and is left out",
            ),
        ),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InvalidInputError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def _fmt(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.3f}" if column in ("psnr", "fid", "local_fid", "latency_s") else f"{value:.4f}"
    return str(value)


def preset_table(preset: Preset, summary: dict[str, Any], *, label: str | None = None) -> str:
    """The paper's table from a bench summary: its rows and columns in its order, then the notes."""
    runs = summary["runs"]
    lines = [f"{preset.title} ({preset.paper})"]
    if label:
        lines.append(label)
    lines += ["", "| Method | " + " | ".join(c.header for c in preset.columns) + " |",
              "|---|" + "---|" * len(preset.columns)]
    for row in preset.rows:
        if row.name is None:
            cells = ["—"] * len(preset.columns)
        else:
            cells = []
            for c in preset.columns:
                if c.column == "latency_s":  # mean over the mask settings, as the runner's table
                    values = [r["values"].get("latency_s") for r in runs.values() if r["method"] == row.name]
                    values = [v for v in values if v is not None]
                    cells.append(_fmt(sum(values) / len(values), c.column) if values else "n/a")
                else:
                    cells.append(_fmt(runs.get(f"{row.name}/{c.mask}", {}).get("values", {}).get(c.column),
                                      c.column))
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    notes = ["- —: not implemented in erasekit"]
    metrics = summary["metrics"].items()
    notes += [f"- {n}: unavailable — {m['unavailable']}" for n, m in metrics if m["unavailable"]]
    notes += [f"- {n}: method unavailable — {r}" for n, r in summary["methods_unavailable"].items()]
    notes += [f"- {n}" for n in preset.notes]
    notes.append(f"- dataset: {summary['dataset']['path']} ({summary['dataset']['layout']}, "
                 f"n = {summary['dataset']['n']}); the paper's: {preset.datasets}")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


__all__ = ["PRESETS", "Preset", "PresetColumn", "PresetRow", "get_preset", "preset_table"]
