"""What diffusion methods share: attention processors and an attention store, a denoising loop with
per-step hooks, DDIM inversion, and a remover base."""
