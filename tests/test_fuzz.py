"""Fuzzing image decoding and imresize: a result or a clear error, never a crash."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sr_lightning.data.images import ImageLoadError, load_image
from sr_lightning.data.imresize import imresize

MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F"]
FORMATS = {"PNG": ".png", "TIFF": ".tif", "BMP": ".bmp", "JPEG": ".jpg", "WEBP": ".webp"}
sizes = st.tuples(st.integers(1, 40), st.integers(1, 40)) | st.sampled_from(
    [(1, 1), (2, 3), (3, 2), (1, 97), (97, 1), (2, 64)]
)


def _encode(mode: str, size: tuple[int, int], fmt: str, seed: int) -> bytes | None:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    image = image.convert(mode)
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):
        return None  # Pillow cannot write this mode in this format: nothing to load
    return buf.getvalue()


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mode=st.sampled_from(MODES), size=sizes, fmt=st.sampled_from(sorted(FORMATS)),
       seed=st.integers(0, 2**16), cut=st.floats(0.0, 1.0))  # fmt: skip
def test_any_image_decodes_or_fails_clearly(tmp_path_factory, mode, size, fmt, seed, cut):
    data = _encode(mode, size, fmt, seed)
    if data is None:
        return
    truncate = cut < 0.5
    if truncate:
        data = data[: int(len(data) * cut * 2)]
    path = tmp_path_factory.mktemp("fuzz") / f"x{FORMATS[fmt]}"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except ImageLoadError as err:
        assert str(path) in str(err)
        return
    assert image.dtype == torch.uint8 and image.shape[0] in (1, 3)
    if not truncate:
        assert tuple(image.shape[1:]) == (size[1], size[0])


@settings(max_examples=150, deadline=None)
@given(h=st.integers(1, 48), w=st.integers(1, 48),
       scale=st.sampled_from([0.25, 1 / 3, 0.5, 0.7, 1.5, 2.0, 3.0, 4.0]))  # fmt: skip
def test_imresize_any_size_gives_the_documented_shape_and_range(h, w, scale):
    x = torch.rand(2, 1, h, w)
    out = imresize(x, scale)
    expected = (int(np.ceil(h * scale - 1e-9)), int(np.ceil(w * scale - 1e-9)))
    assert out.shape == (2, 1, *expected)
    assert torch.isfinite(out).all()
    # bicubic overshoots by at most a fraction of the range (kernel lobes are -0.07 at worst)
    assert out.min() > -0.5 and out.max() < 1.5
    if h * scale >= 1 and w * scale >= 1:
        constant = imresize(torch.full((h, w), 0.3), scale)
        torch.testing.assert_close(constant, torch.full_like(constant, 0.3))


@pytest.mark.parametrize("bad", [torch.zeros(0, 5), torch.zeros(5, 0)])
def test_imresize_rejects_empty_images(bad):
    with pytest.raises(ValueError):
        imresize(bad, 2)
