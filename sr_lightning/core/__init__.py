"""What the apps share and a library user imports: config paths, module and data builders,
checkpoints and model files, tiled inference, metrics (PSNR/SSIM and the perceptual ones), the
published numbers, learning-rate schedules and the released-model zoo.

Layer: below :mod:`sr_lightning.runtime`, above the nets, losses and data; it may import those
and :mod:`sr_lightning.common`, never runtime, modules or apps (``make lint`` checks it). Put
here what two apps (or an app and the training stack) need and that is not Lightning plumbing.
"""
