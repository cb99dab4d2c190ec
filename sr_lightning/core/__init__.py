"""What the apps share and a library user imports: configs, builders, checkpoints and model
files, tiled inference, metrics (PSNR/SSIM and the perceptual ones), pretrained weights, the
published numbers, learning-rate schedules and the released-model zoo."""
