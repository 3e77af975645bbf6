"""PixPerfect (NeurIPS 2025): a pixel-space refiner that removes seams after any method.

Read top to bottom: :mod:`.network` (the CM-GAN-style generator), :mod:`.tone_map` (the discriminative pixel
space, Eq. 2–3), :mod:`.losses` (Eq. 1, 2, 4), :mod:`.artifacts` (training pairs, Sec. 3.2 / App. C),
:mod:`.pooling` (Sec. 3.3), :mod:`.weights` (files), :mod:`.refiner` (the ``pixperfect`` refiner),
:mod:`.train`
(``erasekit train pixperfect``). Importing this package does not import torch; the modules that need it do.
"""

from __future__ import annotations

from .refiner import PixPerfectRefiner, register

__all__ = ["PixPerfectRefiner", "register"]
