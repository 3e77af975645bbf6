"""What trainers share, whatever the method: YAML configs with overrides (:mod:`.config`), the checkpoint
layout and run result (:mod:`.checkpoints`), and the LPIPS-VGG perceptual loss resolved from local weights
(:mod:`.perceptual`).

Method-specific training lives with its method (``erasekit.methods.osor.train``,
``erasekit.methods.eradiff.train``, ``erasekit.refiners.pixperfect.train``).
"""
