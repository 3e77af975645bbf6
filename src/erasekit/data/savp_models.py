"""The two models SAVP consults, behind small interfaces, and their adapters.

* :class:`Detector` — open-vocabulary boxes for a text query (Alg. 1: GroundingDINO on I_shot with the
instruction).
* :class:`Segmenter` — box-prompted masks (Alg. 2: SAM2 on I_shot with the validated boxes).

Real adapters load **local** checkpoints (a folder, or a Hub id already in the local cache) through
transformers:
:class:`GroundingDinoDetector` (``AutoProcessor`` + ``AutoModelForZeroShotObjectDetection``) and
:class:`SamSegmenter` (``Sam2Model`` for SAM2 checkpoints, ``SamModel`` for SAM v1 ones). A missing checkpoint
is a
:class:`~erasekit.types.MissingWeightsError` naming the download command.

Stand-ins, named for what they are: :class:`OracleDetector` returns boxes it was given (ground truth in tests
and in the synthetic benchmark, never a claim about detection quality); :class:`GrabCutSegmenter` is OpenCV's
box-initialised GrabCut, a weight-free classical segmenter; :class:`OracleSegmenter` returns known masks.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from ..masks import Box
from ..types import InvalidInputError, MissingWeightsError

if TYPE_CHECKING:
    from transformers import Sam2Model, SamModel

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-base"
DEFAULT_SEGMENTER = "facebook/sam2.1-hiera-large"


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float
    label: str = ""


@runtime_checkable
class Detector(Protocol):
    def detect(self, image: np.ndarray, query: str) -> list[Detection]:
        """Boxes for ``query`` in ``image`` (uint8 H×W×3), any order, with scores in [0, 1]."""
        ...


@runtime_checkable
class Segmenter(Protocol):
    def segment(self, image: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
        """One bool H×W mask per box prompt."""
        ...


def box_from_xyxy(x0: float, y0: float, x1: float, y1: float, shape: tuple[int, int]) -> Box:
    """Float corner coordinates -> the smallest half-open pixel box covering them, clipped to the image."""
    h, w = shape
    return Box(max(0, math.floor(y0)), max(0, math.floor(x0)), min(h, math.ceil(y1)), min(w, math.ceil(x1)))


# ---- stand-ins ---------------------------------------------------------------------------------------------
@dataclass
class OracleDetector:
    """Returns fixed, known boxes (ground truth) whatever the query.

    For tests and the synthetic benchmark only.
    """

    boxes: Sequence[Box]
    score: float = 1.0

    def detect(self, image: np.ndarray, query: str) -> list[Detection]:
        return [Detection(b, self.score, "oracle") for b in self.boxes]


@dataclass
class OracleSegmenter:
    """Returns the known object mask for every prompt box that overlaps it.

    Ground truth, for tests and benchmarks.
    """

    mask: np.ndarray

    def segment(self, image: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
        truth = np.asarray(self.mask) > 0.5
        out = []
        for box in boxes:
            hit = truth[box.slices].any()
            out.append(truth.copy() if hit else np.zeros_like(truth))
        return out


@dataclass
class GrabCutSegmenter:
    """OpenCV GrabCut initialised with the box (classical, weight-free). Deterministic: OpenCV's RNG is seeded
    before each call (GrabCut's GMM initialisation uses k-means)."""

    iterations: int = 5
    seed: int = 0

    def segment(self, image: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
        import cv2

        bgr = np.ascontiguousarray(image[..., ::-1])
        h, w = image.shape[:2]
        out = []
        for box in boxes:
            if box.width < 2 or box.height < 2 or box.area >= h * w:
                out.append(np.zeros((h, w), bool) if box.area == 0 else _box_mask(box, (h, w)))
                continue
            cv2.setRNGSeed(self.seed)
            mask = np.zeros((h, w), np.uint8)
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            rect = (box.left, box.top, box.width, box.height)
            cv2.grabCut(bgr, mask, rect, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT)
            out.append((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD))
        return out


def _box_mask(box: Box, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[box.slices] = True
    return mask


# ---- transformers adapters ---------------------------------------------------------------------------------
def _missing(kind: str, name: str, hub_id: str, exc: Exception | None = None) -> MissingWeightsError:
    looks_like_path = Path(name).is_absolute() or name.startswith(".") or name.count("/") != 1
    if looks_like_path and not Path(name).exists():
        return MissingWeightsError(
            f"{kind} checkpoint folder '{name}' does not exist; fetch the weights with "
            f"`hf download {hub_id} --local-dir {name}`"
        )
    if looks_like_path:
        detail = f": {str(exc).splitlines()[0][:160]}" if exc else ""
        return MissingWeightsError(f"{kind} checkpoint folder '{name}' cannot be loaded{detail}")
    return MissingWeightsError(
        f"{kind} checkpoint '{name}' is not in the local Hugging Face cache; fetch it with "
        f"`hf download {name}` (or pass a local folder)"
    )


def _torch_device(device: str | None):
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


class GroundingDinoDetector:
    """GroundingDINO through transformers, from a local folder or a cached Hub id (never downloads).

    The query is lower-cased and ends with "." (GroundingDINO's phrase convention). ``box_threshold`` is a
    floor below which boxes are not even returned; SAVP applies τ_score and K_sem itself.
    """

    def __init__(
        self,
        name_or_path: str = DEFAULT_DETECTOR,
        *,
        device: str | None = None,
        box_threshold: float = 0.05,
        text_threshold: float = 0.25,
    ):
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.name = str(name_or_path)
        try:
            self.processor = AutoProcessor.from_pretrained(self.name, local_files_only=True)
            self.model = AutoModelForZeroShotObjectDetection.from_pretrained(self.name, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise _missing("GroundingDINO", self.name, DEFAULT_DETECTOR, exc) from None
        self.device = _torch_device(device)
        self.model.to(self.device).eval()
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self._lock = threading.Lock()  # one forward at a time per loaded model

    @staticmethod
    def query_text(query: str) -> str:
        text = " ".join(query.strip().lower().split())
        return text if text.endswith(".") else text + "."

    def detect(self, image: np.ndarray, query: str) -> list[Detection]:
        import torch
        from PIL import Image

        h, w = image.shape[:2]
        inputs = self.processor(
            images=Image.fromarray(image), text=self.query_text(query), return_tensors="pt"
        )
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with self._lock, torch.no_grad():
            outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            target_sizes=[(h, w)],
        )[0]
        labels = result.get("text_labels", result.get("labels", []))
        out = []
        for box, score, label in zip(result["boxes"].tolist(), result["scores"].tolist(), list(labels)):
            x0, y0, x1, y1 = box
            b = box_from_xyxy(x0, y0, x1, y1, shape=(h, w))
            if b.area > 0:
                out.append(Detection(b, float(score), str(label)))
        return out


class SamSegmenter:
    """SAM2 (``Sam2Model``) or SAM (``SamModel``) through transformers with box prompts, single-mask output.

    SAM v1 uses transformers' ``SamProcessor``. SAM2's processor needs torchvision; where torchvision is
    missing (it has no CPU wheel on some platforms) the same preprocessing is done here from the checkpoint's
    own settings: resize to the model's square input (antialiased bilinear, as its torchvision backend), scale
    to [0, 1] and normalise with the processor's mean/std; boxes are scaled to the resized frame;
    low-resolution mask logits are resized back bilinearly and thresholded at 0, as the processor's
    ``post_process_masks`` does.
    """

    def __init__(self, name_or_path: str = DEFAULT_SEGMENTER, *, device: str | None = None):
        from transformers import AutoConfig

        self.name = str(name_or_path)
        try:
            config = AutoConfig.from_pretrained(self.name, local_files_only=True)
        except (OSError, ValueError) as exc:  # the family is not known yet: name both, fetch the default
            raise _missing("SAM2 or SAM", self.name, DEFAULT_SEGMENTER, exc) from None
        self.kind = config.model_type
        if self.kind not in ("sam2", "sam"):
            raise InvalidInputError(f"'{self.name}' is a {self.kind!r} checkpoint, not SAM2 or SAM")
        self.model: Sam2Model | SamModel
        try:
            if self.kind == "sam2":
                from transformers import Sam2Model

                self.model = Sam2Model.from_pretrained(self.name, local_files_only=True)
                self.processor = self._sam2_processor()
            else:
                from transformers import SamModel, SamProcessor

                self.model = SamModel.from_pretrained(self.name, local_files_only=True)
                self.processor = SamProcessor.from_pretrained(self.name, local_files_only=True)
        except OSError as exc:
            sam2 = self.kind == "sam2"
            raise _missing("SAM2" if sam2 else "SAM", self.name,
                           DEFAULT_SEGMENTER if sam2 else "facebook/sam-vit-base", exc) from None
        self.device = _torch_device(device)
        self.model.to(self.device).eval()
        self._lock = threading.Lock()
        if self.kind == "sam2" and self.processor is None:
            self._size, self._mean, self._std = self._sam2_settings()

    def _sam2_processor(self):
        from transformers.utils import is_torchvision_available

        if not is_torchvision_available():
            return None
        from transformers import Sam2Processor

        return Sam2Processor.from_pretrained(self.name, local_files_only=True)

    def _sam2_settings(self) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
        from transformers import PreTrainedConfig
        from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        vision_config = self.model.config.vision_config
        assert isinstance(vision_config, PreTrainedConfig)  # Sam2Config builds its sub-configs from dicts
        size = vision_config.backbone_config.image_size
        size = (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))
        # SAM2's image processor normalises with the ImageNet statistics unless its config file says
        # otherwise.
        mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
        folder = Path(self.name)
        if (folder / "preprocessor_config.json").is_file():
            cfg = json.loads((folder / "preprocessor_config.json").read_text())
            mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
            if isinstance(cfg.get("size"), dict) and "height" in cfg["size"]:
                size = (int(cfg["size"]["height"]), int(cfg["size"]["width"]))
        return size, np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def segment(self, image: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
        import torch

        if not boxes:
            return []
        h, w = image.shape[:2]
        xyxy = [[b.left, b.top, b.right, b.bottom] for b in boxes]
        with self._lock, torch.no_grad():
            if self.processor is not None:
                from PIL import Image

                inputs = self.processor(
                    images=Image.fromarray(image), input_boxes=[xyxy], return_tensors="pt"
                )
                inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
                outputs = self.model(
                    **{k: v for k, v in inputs.items() if k in ("pixel_values", "input_boxes")},
                    multimask_output=False,
                )
                sizes = [inputs["original_sizes"].cpu()]
                if "reshaped_input_sizes" in inputs:  # SAM v1 pads to a square and needs the unpadded size
                    sizes.append(inputs["reshaped_input_sizes"].cpu())
                masks = self.processor.post_process_masks(outputs.pred_masks.cpu(), *sizes)[0]
                return [m[0].numpy().astype(bool) for m in masks]
            logits = self._sam2_forward(image, xyxy)
        up = torch.nn.functional.interpolate(logits[None], size=(h, w), mode="bilinear", align_corners=False)[
            0
        ]
        return [m.numpy() > 0 for m in up]

    def sam2_pixel_values(self, image: np.ndarray):
        """(1×3×S×S input tensor, (sx, sy) photo -> input coordinate scale) by the steps in the class
        docstring; also used by :mod:`erasekit.masking.clicks`, which embeds once and decodes per click."""
        import torch

        if not hasattr(self, "_size"):
            self._size, self._mean, self._std = self._sam2_settings()
        h, w = image.shape[:2]
        th, tw = self._size
        # As transformers' Sam2ImageProcessor (torchvision backend) does, bit for bit: an antialiased bilinear
        # resize of the uint8 image (uint8 out), then rescaling and normalising fused into one step,
        # (x - 255·mean) / (255·std). tests/test_sam2_preprocessing.py compares it with the processor.
        chw = torch.tensor(np.asarray(image, dtype=np.uint8)).permute(2, 0, 1)[None]  # copies read-only input
        resized = torch.nn.functional.interpolate(
            chw, size=(th, tw), mode="bilinear", antialias=True, align_corners=False
        )[0].float()
        mean = torch.from_numpy(self._mean).view(3, 1, 1) * 255.0
        std = torch.from_numpy(self._std).view(3, 1, 1) * 255.0
        pixels = ((resized - mean) / std)[None].to(self.device)
        return pixels, (tw / w, th / h)

    def _sam2_forward(self, image: np.ndarray, xyxy: list[list[int]]):
        import torch

        pixels, (sx, sy) = self.sam2_pixel_values(image)
        scale = np.array([sx, sy, sx, sy], np.float32)
        boxes = torch.from_numpy(np.asarray(xyxy, np.float32) * scale)[None].to(self.device)
        outputs = self.model(pixel_values=pixels, input_boxes=boxes, multimask_output=False)
        return outputs.pred_masks[0, :, 0].float().cpu()  # (boxes, h', w') logits


__all__ = ["DEFAULT_DETECTOR", "DEFAULT_SEGMENTER", "Detection", "Detector", "GrabCutSegmenter",
           "GroundingDinoDetector", "OracleDetector", "OracleSegmenter", "SamSegmenter", "Segmenter",
           "box_from_xyxy"]
