"""SAM 3 (Meta, arXiv:2511.16719) through transformers: a phrase straight to instance masks.

:class:`Sam3TextSegmenter` loads ``Sam3Model`` from a local folder or a Hub id already in the local cache (it
never downloads). ``Sam3Processor``'s image processor imports torchvision, which has no wheel beside the CPU
torch on some machines; there the same steps are done here from the checkpoint's ``preprocessor_config.json``:
resize to the model's square input (bilinear), scale to [0, 1], normalise with the processor's mean/std (0.5
by default); the text is tokenised by the checkpoint's CLIP tokenizer padded to 32 tokens, as
``Sam3Processor`` does. Post-processing is the processor's ``post_process_instance_segmentation``: score =
sigmoid(logit) × sigmoid(presence logit), mask = sigmoid(mask logits) resized bilinearly to the photo, > 0.5.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..data.savp_models import Detection, box_from_xyxy
from ..types import InvalidInputError, MissingWeightsError
from .instances import Instance

DEFAULT_SAM3 = "facebook/sam3"
TEXT_LENGTH = 32  # Sam3Processor pads every prompt to 32 tokens
MASK_THRESHOLD = 0.5  # post_process_instance_segmentation's default


def missing_sam3(name: str) -> MissingWeightsError:
    if Path(name).is_absolute() or name.startswith(".") or name.count("/") != 1:
        return MissingWeightsError(
            f"SAM 3 checkpoint folder '{name}' cannot be loaded; fetch the weights with "
            f"`hf download {DEFAULT_SAM3} --local-dir {name}`"
        )
    return MissingWeightsError(
        f"SAM 3 checkpoint '{name}' is not in the local Hugging Face cache; fetch it with "
        f"`hf download {name}` (or pass a local folder with sam3=DIR)"
    )


class Sam3TextSegmenter:
    """Text prompt -> scored instance masks with SAM 3's detector and mask head."""

    name = "sam3"

    def __init__(self, name_or_path: str = DEFAULT_SAM3, *, device: str | None = None):
        import torch
        from transformers import AutoTokenizer, Sam3Model

        self.path = str(name_or_path)
        try:
            model: Any = Sam3Model.from_pretrained(self.path, local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise missing_sam3(self.path) from exc
        self.model = model
        if self.model.config.model_type != "sam3":
            raise InvalidInputError(
                f"'{self.path}' is a {self.model.config.model_type!r} checkpoint, not SAM 3"
            )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.size, self.mean, self.std = self._preprocessing()
        self._lock = threading.Lock()  # one forward at a time per loaded model

    def _preprocessing(self) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
        from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD

        side = int(self.model.config.vision_config.image_size)
        size, mean, std = (side, side), IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD
        config = Path(self.path) / "preprocessor_config.json"
        if config.is_file():
            cfg = json.loads(config.read_text())
            mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
            if isinstance(cfg.get("size"), dict) and "height" in cfg["size"]:
                size = (int(cfg["size"]["height"]), int(cfg["size"]["width"]))
        return size, np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def pixel_values(self, image: np.ndarray):
        """The photo as SAM 3's input tensor (1×3×S×S)."""
        import torch
        from PIL import Image

        th, tw = self.size
        resized = np.asarray(Image.fromarray(image).resize((tw, th), Image.Resampling.BILINEAR), np.float32)
        normalised = (resized / 255.0 - self.mean) / self.std
        return torch.from_numpy(normalised.transpose(2, 0, 1).copy())[None].to(self.device)

    def instances(self, image: np.ndarray, prompt: str, *, threshold: float) -> list[Instance]:
        """Instances whose score exceeds ``threshold``, with bool H×W masks at the photo's size."""
        import torch

        h, w = image.shape[:2]
        text = self.tokenizer(
            [prompt], padding="max_length", max_length=TEXT_LENGTH, truncation=True, return_tensors="pt"
        )
        with self._lock, torch.no_grad():
            out = self.model(
                pixel_values=self.pixel_values(image),
                input_ids=text.input_ids.to(self.device),
                attention_mask=text.attention_mask.to(self.device),
            )
        scores = out.pred_logits[0].float().sigmoid()
        if out.presence_logits is not None:
            scores = scores * out.presence_logits[0].float().sigmoid()
        keep = (scores > threshold).nonzero().flatten().tolist()
        if not keep:
            return []
        logits = out.pred_masks[0, keep].float().sigmoid()[None]
        masks = torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)[0]
        boxes = out.pred_boxes[0, keep].float().cpu() * torch.tensor(
            [w, h, w, h]
        )  # normalised xyxy -> pixels
        found = []
        for i, index in enumerate(keep):
            x0, y0, x1, y1 = boxes[i].tolist()
            detection = Detection(box_from_xyxy(x0, y0, x1, y1, (h, w)), float(scores[index]), prompt)
            found.append(Instance(masks[i].cpu().numpy() > MASK_THRESHOLD, detection.score, detection.box))
        return found

    def describe(self) -> dict[str, str]:
        return {"source": "sam3", "model": self.path}
