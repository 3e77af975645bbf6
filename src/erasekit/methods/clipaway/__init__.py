"""CLIPAway — focused embeddings for object removal on SD1.5-Inpainting (arXiv:2406.09368).

Read top to bottom:

``alpha_clip``  AlphaCLIP ViT-L/14 on transformers' CLIP plus the alpha patch convolution; the authors'
                ``clip_l14_grit+mim_fultune_6xe.pth`` loaded strictly through an explicit key map.
``mlp``         Table 2's MLP from AlphaCLIP's 768-d space to IP-Adapter's 1024-d one (``model.safetensors``).
``embedding``   :class:`ClipAwayEmbedder`: image + mask → foreground/background AlphaCLIP embeddings → MLP →
                Eq. 2's projection → diffusers' ``ip_adapter_image_embeds`` (reusable by any SD1.5 call).
``weights``     where the three files resolve (explicit paths, a weights folder, ``$ERASEKIT_MODELS_DIR``,
                the Hub cache for IP-Adapter) and the message when one is missing.
``remover``     the ``clipaway`` method: diffusers' inpainting pipeline with IP-Adapter, the authors'
                defaults.

Only the registration is imported here; torch and the models load when a remover is built.
"""

from __future__ import annotations

from .remover import AUTHORS_NEGATIVE_PROMPT, ClipAwayRemover, register

__all__ = ["AUTHORS_NEGATIVE_PROMPT", "ClipAwayRemover", "register"]
