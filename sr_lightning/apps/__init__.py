"""The command-line apps: ``sr-train``, ``sr-eval``, ``sr-upscale``, ``sr-export``, ``sr-report``.

Each is a thin Hydra (or argparse) entry point (parse, build, run) over everything below it:
:mod:`sr_lightning.modules`, :mod:`sr_lightning.runtime`, :mod:`sr_lightning.core`, the nets,
losses and data, and :mod:`sr_lightning.common`. Nothing below imports an app.

The rule between apps: no console script imports another console script (``make lint`` checks
it). A script's helpers live beside it and serve only it: :mod:`.eval_wandb` (sr-eval's W&B
upload), :mod:`.report_common` and :mod:`.report_perceptual` (sr-report's shared part and its
LPIPS / DISTS part; both import ``report_common``, neither imports ``report``), and sr-report's
images: :mod:`.report_images` (a test image's HR, bicubic and saved SR images with their
per-image numbers), :mod:`.report_crops` (the zoomed-crop figure) and :mod:`.report_html`
(report.html; its script and style in ``report_assets/``). What two apps both need belongs in
``core`` or ``runtime``, not in an app.
"""
