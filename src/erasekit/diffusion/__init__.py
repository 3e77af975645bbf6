"""What diffusion methods share: attention processors and store, a denoising loop with hooks, DDIM inversion, a remover base."""
