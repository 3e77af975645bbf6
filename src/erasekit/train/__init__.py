"""Training: OSOR Phase I/II (trainer, occupancy-guided discriminator, losses, configs, ``erasekit train``).

Heavy modules (torch, diffusers, peft, accelerate) are imported by the submodules, not here, so ``import erasekit``
stays light.
"""
