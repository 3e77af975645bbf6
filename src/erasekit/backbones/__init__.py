"""Diffusion backbones: presets, offline-first loading, device/precision, latent codecs, scheduler maths.

Submodules (import them directly; nothing here imports torch or diffusers, so ``import erasekit`` stays fast):

* :mod:`~erasekit.backbones.presets`  — ``PRESETS``, ``resolve_model_path``, ``load_pipeline``, ``download``;
* :mod:`~erasekit.backbones.device`   — ``resolve_device``, ``resolve_dtype``, CPU offload /
  attention slicing;
* :mod:`~erasekit.backbones.loading`  — ``BackboneOptions`` (a method's load options), ``load_backbone``;
* :mod:`~erasekit.backbones.latents`  — VAE encode/decode with scale/shift, FLUX pack/unpack,
  masks to latents;
* :mod:`~erasekit.backbones.schedule` — ``add_noise``, ``flow_noise``, ``predict_x0`` per parametrisation.
"""
