"""Training CLIPAway's MLP (arXiv:2406.09368, Algorithm 1, App. A.2): the config (``config``, with the
packaged ``configs/mlp.yaml``), the frozen encoders' embeddings computed once and cached on disk
(``features``) and the Accelerate trainer (``trainer``).
``erasekit train clipaway-mlp --config clipaway_mlp``."""
