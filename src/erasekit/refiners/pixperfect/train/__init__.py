"""``erasekit train pixperfect``: the refiner trained on any image folder with simulated artifacts.

:mod:`.config` (the YAML settings, the paper's in ``configs/pixperfect.yaml``), :mod:`.trainer` (the loop).
"""
