"""OmegaConf resolvers and config helpers shared by the Hydra apps."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def skimage_data_dir() -> str:
    """The folder of photographs bundled inside scikit-image (the offline `data=sample`)."""
    import skimage.data

    return str(Path(skimage.data.__file__).parent)


def register_resolvers() -> None:
    """Resolvers used by conf/: ``${sr.skimage_data:}``, ``${sr.pid:}``, ``${sr.cwd:}``,
    ``${sr.if:${flag},a,b}`` and ``${sr.direction:${optimized_metric}}``. Values derived
    from the top-level scale (patch sizes) are set in code: :mod:`sr_lightning.core.derived`."""
    resolvers = {
        "sr.skimage_data": skimage_data_dir,
        "sr.pid": os.getpid,
        "sr.cwd": os.getcwd,
        "sr.if": lambda cond, yes, no: yes if cond else no,
        "sr.direction": metric_direction,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            # sr.pid / sr.cwd are cached like ${now:}: the jobs of a submitit sweep (other
            # processes) must resolve the sweep dir to the launcher's pid, not their own
            OmegaConf.register_new_resolver(name, fn, use_cache=name in ("sr.pid", "sr.cwd"))


# metrics where lower is better (a name's last part, less a ``_best`` suffix)
LOWER_IS_BETTER = frozenset({"lpips", "dists", "loss", "loss_epoch", "loss_step"})


def lower_is_better(metric: str) -> bool:
    """``val/lpips_best`` and ``train/loss_epoch``: yes; ``val/psnr_best``: no."""
    return str(metric).rsplit("/", 1)[-1].removesuffix("_best") in LOWER_IS_BETTER


def metric_direction(metric: str) -> str:
    """Optuna's direction for a metric: ``${sr.direction:${optimized_metric}}``."""
    return "minimize" if lower_is_better(metric) else "maximize"


CONF_PACKAGE = "sr_lightning.conf"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # sr_lightning/
_CHECKOUT_CONF = _PACKAGE_DIR.parent / "conf"


def _in_checkout() -> bool:
    """Running from the repository (or an editable install of it), not from a wheel."""
    return (_PACKAGE_DIR.parent / "pyproject.toml").is_file() and (
        _CHECKOUT_CONF / "train.yaml"
    ).is_file()


# The configs: the checkout's top-level conf/ (edits show up at once), else the copy the
# wheel ships as package data in sr_lightning/conf (setup.py maps conf/ there).
CONF_DIR = _CHECKOUT_CONF if _in_checkout() else _PACKAGE_DIR / "conf"
# what the apps give @hydra.main: a file path in a checkout, Hydra's pkg:// when installed
CONFIG_PATH = str(CONF_DIR) if _in_checkout() else f"pkg://{CONF_PACKAGE}"
