"""OSOR training (arXiv:2606.28094, Sec. 3.3-3.5, App. B): ``erasekit train osor --config FILE.yaml``.

``config`` (pydantic, loadable from the packaged YAML files in ``configs/``), ``trainer`` (Phase I/II with
Accelerate), ``losses`` (Eq. 7-11, 14), ``discriminator`` (the occupancy-guided ConvNeXt discriminator, Sec.
3.3) and ``conditioning`` (incomplete-mask augmentation, Sec. 3.5). Heavy libraries are imported by the
submodules.
"""
