"""The command-line apps: ``sr-train``, ``sr-eval``, ``sr-upscale``, ``sr-export``, ``sr-report``.

Each is a thin Hydra (or argparse) entry point over :mod:`sr_lightning.core` and the training
stack (:mod:`sr_lightning.modules`, :mod:`sr_lightning.data`); no app imports another.
"""
