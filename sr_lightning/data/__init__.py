"""The data: HR image sets (folders, paired sets, caches in RAM, on disk or on the device),
MATLAB-compatible degradation and imresize, the Lightning data module with its resumable
loader, and dataset downloads.

Layer: beside :mod:`sr_lightning.nets` and :mod:`sr_lightning.losses` (none imports another),
above :mod:`sr_lightning.common` only: colour / luma, 8-bit rounding, modcrop, downloads and
user errors come from there, never from core or runtime (``make lint`` checks it).
"""
