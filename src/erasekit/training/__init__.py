"""What trainers share, whatever the method: the perceptual (LPIPS-VGG) loss resolved from local weights.

Method-specific training lives with its method (``erasekit.methods.osor.train``).
"""
