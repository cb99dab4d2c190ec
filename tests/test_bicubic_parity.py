"""The evaluation protocol reproduces the published bicubic baselines.

Published numbers: Kim et al., VDSR (CVPR'16) Table 3, bicubic rows, Y channel,
border crop = scale (copied in the project's published.csv).

Protocol (SRCNN / VDSR evaluation code): HR PNG -> modcrop to a multiple of the
scale -> uint8 luma (MATLAB rgb2ycbcr, rounded; grey images as they are) ->
x = luma / 255 -> lr = imresize(x, 1/s) left unrounded -> bic = imresize(lr, s)
-> PSNR / SSIM of round(bic) against x with s pixels cropped -> mean over images.

What it takes to hit the published numbers (measured while writing this test):
* MATLAB bicubic with antialiasing and symmetric borders (any other resampler is
  tenths of a dB off);
* rounding the bicubic output to 8 bits before measuring (without it Set5 ×2 is
  33.677, not 33.66), and the HR luma rounded to uint8 (unrounded Y gives 33.674);
* grey bridge.png kept as its own luma (treating it as RGB adds 0.094 dB to Set14);
* SSIM with 'valid' filtering and no automatic downsampling (2×2-averaging images
  of 384 px or more first, as some SSIM scripts do, gives Set5 ×2 SSIM 0.938).

Set5 then matches all six published values to the printed precision. Set14 stays
0.008 / 0.0095 / 0.0001 dB below at ×2/×3/×4 (SSIM 0.0001 / 0.0006 / 0.0008 below):
no protocol variant moves Set5 and Set14 together onto the table, so this is most
likely a difference between our Set14 files (the SelfExSR / denoising_datasets
copy) and the ones VDSR used; Set14 is therefore checked to ±0.01 dB / ±0.001.
Our own measured values are pinned tightly so that any drift is caught.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_lightning.common.color import to_luma_uint8
from sr_lightning.core.metrics import psnr_y, ssim_y
from sr_lightning.data.imresize import imresize

# (set, scale): (published PSNR, published SSIM, measured PSNR, measured SSIM)
TABLE = {
    ("Set5", 2): (33.66, 0.9299, 33.661410, 0.929884),
    ("Set5", 3): (30.39, 0.8682, 30.392202, 0.868206),
    ("Set5", 4): (28.42, 0.8104, 28.420680, 0.810374),
    ("Set14", 2): (30.24, 0.8688, 30.231802, 0.868651),
    ("Set14", 3): (27.55, 0.7742, 27.540532, 0.773609),
    ("Set14", 4): (26.00, 0.7027, 26.000141, 0.701864),
}
N_IMAGES = {"Set5": 5, "Set14": 14}


def _data_dir() -> Path:
    root = os.environ.get("SR_DATA_DIR")
    if not root:
        pytest.skip("SR_DATA_DIR is not set (CI sets it to the folder holding Set5/ and Set14/)")
    path = Path(root)
    if not path.is_dir():
        pytest.skip(f"SR_DATA_DIR={root} does not exist")
    return path


def _load_uint8(path: Path) -> torch.Tensor:
    """HR PNG as uint8 (C, H, W): grey ('L') stays 1 channel, everything else RGB."""
    with Image.open(path) as im:
        im = im.convert("L" if im.mode == "L" else "RGB")
        arr = np.asarray(im).copy()
    t = torch.from_numpy(arr)
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


@pytest.fixture(scope="module")
def benchmark_sets() -> dict[str, list[torch.Tensor]]:
    root = _data_dir()
    sets = {}
    for name, count in N_IMAGES.items():
        folder = root / name
        if not folder.is_dir():
            pytest.skip(f"{folder} is missing")
        files = sorted(folder.glob("*.png"))
        assert len(files) == count, f"{folder}: expected {count} PNGs, found {len(files)}"
        sets[name] = [_load_uint8(f) for f in files]
    return sets


def _bicubic_scores(images: list[torch.Tensor], scale: int) -> tuple[float, float]:
    psnrs, ssims = [], []
    for img in images:
        h, w = img.shape[-2:]
        img = img[:, : h - h % scale, : w - w % scale]  # modcrop
        x = to_luma_uint8(img)[None].to(torch.float64) / 255
        bic = imresize(imresize(x, 1 / scale), scale)
        assert bic.shape == x.shape
        psnrs.append(psnr_y(bic, x, crop=scale))
        ssims.append(ssim_y(bic, x, crop=scale))
    return torch.cat(psnrs).mean().item(), torch.cat(ssims).mean().item()


@pytest.mark.parametrize(("name", "scale"), list(TABLE))
def test_bicubic_matches_published(
    benchmark_sets: dict[str, list[torch.Tensor]], name: str, scale: int
) -> None:
    pub_psnr, pub_ssim, our_psnr, our_ssim = TABLE[(name, scale)]
    psnr, ssim = _bicubic_scores(benchmark_sets[name], scale)

    if name == "Set5":
        # Exact to the published precision.
        assert round(psnr, 2) == pytest.approx(pub_psnr, abs=1e-9), psnr
        assert round(ssim, 4) == pytest.approx(pub_ssim, abs=1e-9), ssim
    else:
        # Data-version gap explained in the module docstring.
        assert abs(psnr - pub_psnr) <= 0.01, psnr
        assert abs(ssim - pub_ssim) <= 0.001, ssim

    # Regression pin on what this implementation measures on these files.
    assert psnr == pytest.approx(our_psnr, abs=5e-5)
    assert ssim == pytest.approx(our_ssim, abs=5e-6)
