"""The leaf helpers every layer may use: torch, numpy and Pillow only, nothing of sr_lightning
above this package (``make lint`` checks it).

What belongs here is what two sibling layers (``nets``, ``losses``, ``data``) or a sibling and
``core`` both need, and that depends on no Lightning, Hydra or W&B:

* :mod:`.errors`: :class:`~.errors.UserError` and :class:`~.errors.ConfigError`, the errors a
  user fixes (the console scripts print them as one block, :mod:`sr_lightning.runtime.errors`);
* :mod:`.color`: MATLAB ``rgb2ycbcr`` / ``ycbcr2rgb`` and the luma of uint8 images;
* :mod:`.pixels`: rounding to 8-bit levels and the modcrop of the evaluation protocol;
* :mod:`.download`: resumable, checksummed downloads;
* :mod:`.pretrained`: the torchvision ImageNet backbones' weights (VGG19 content loss,
  LPIPS / DISTS), found in the torch.hub cache or fetched with :mod:`.download`.
"""
