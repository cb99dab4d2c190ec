"""The resume tests' run settings and their comparison of checkpoint contents."""

from __future__ import annotations

import torch

# 6 images x 8 patches / batch 4 = 12 steps an epoch; last.ckpt every 4 steps
RUN = [
    "scale=2",
    "seed=7",
    "data.patches_per_image=8",
    "callbacks.periodic_last.every_n_train_steps=4",
    "callbacks.image_panels=null",
    "extras.print_config=false",
]
LIGHTNING_BOOKKEEPING = ("/loops/fit_loop/epoch_progress/current/ready", "/current_score")


def assert_same(a, b, path: str = "", roots: tuple[str, str] = ("", "")) -> None:
    """Equal nested checkpoint contents; strings compared with each run's dir replaced."""
    if path.endswith(LIGHTNING_BOOKKEEPING):
        return

    def norm(value, root):
        return value.replace(root, "<run>") if isinstance(value, str) and root else value

    if isinstance(a, dict):
        ka = {norm(k, roots[0]): k for k in a}
        kb = {norm(k, roots[1]): k for k in b}
        assert set(ka) == set(kb), f"{path}: keys {set(ka) ^ set(kb)}"
        for k in ka:
            assert_same(a[ka[k]], b[kb[k]], f"{path}/{k}", roots)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{path}: lengths {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]", roots)
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), f"{path}: max diff {(a.double() - b.double()).abs().max()}"
    else:
        assert norm(a, roots[0]) == norm(b, roots[1]), f"{path}: {a!r} vs {b!r}"
