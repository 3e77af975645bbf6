"""EraDiff's Chain-Rectifying Optimization training: the equations (``cro``), the config (``config``, with the
packaged ``configs/sd2.yaml``) and the Accelerate trainer (``trainer``)."""
