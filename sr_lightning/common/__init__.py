"""The leaf helpers every layer may use: torch, numpy and Pillow only, nothing of sr_lightning
above this package (``make lint`` checks it).

What belongs here is what two sibling layers (``nets``, ``losses``, ``data``) or a sibling and
``core`` both need, and that depends on no Lightning, Hydra or W&B:

* :mod:`.color`: MATLAB ``rgb2ycbcr`` / ``ycbcr2rgb`` and the luma of uint8 images;
* :mod:`.pixels`: rounding to 8-bit levels and the modcrop of the evaluation protocol.
"""
