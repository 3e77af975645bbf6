"""Data for training and evaluating removers: the paired dataset format, synthetic effect scenes, readers for
published layouts, Phase II incomplete-mask conditioning and the SAVP pipeline (``erasekit.data.savp``).

Torch-dependent parts (:mod:`erasekit.data.loader`) and model adapters (:mod:`erasekit.data.savp_models`) are
imported from their modules, so ``import erasekit.data`` stays light.
"""

from .paired import (
    MANIFEST_NAME,
    PairedDataset,
    PairedDatasetWriter,
    PairedRecord,
    PairedSample,
    read_manifest,
)
from .transforms import FLUX_RESIZE, RESIZE_RULES, SDXL_RESIZE, BackboneResize, PairedAugment, ResizeRule

__all__ = ["FLUX_RESIZE", "MANIFEST_NAME", "RESIZE_RULES", "SDXL_RESIZE", "BackboneResize", "PairedAugment",
           "PairedDataset", "PairedDatasetWriter", "PairedRecord", "PairedSample", "ResizeRule",
           "read_manifest"]
