"""torchvision ImageNet backbones (VGG19 of the content loss; AlexNet / VGG16 of LPIPS and DISTS).

One loader for all of them, so the content loss and the perceptual metrics find, verify and
complain about their weights the same way:

1. ``weights_path`` (a key ending in ``weights_path`` in config), used as given; else
2. torch.hub's cache, ``$TORCH_HOME/hub/checkpoints/<torchvision file name>``, verified
   against the sha256 prefix torchvision puts in the file name; else
3. :func:`sr_lightning.common.download.download_file` into that cache (resumable, checked).

When all three fail, :class:`WeightsUnavailableError` says in one line which file to put
where, the key that points at a local copy, and the key that turns the user off.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from sr_lightning.common.download import DownloadError, RemoteFile, download_file
from sr_lightning.common.errors import UserError

# torchvision's IMAGENET1K_V1 weights; the key names the architecture as torchvision does
BACKBONES: dict[str, RemoteFile] = {
    # torchvision's VGG19_Weights.IMAGENET1K_V1. torchvision names hub files
    # "<name>-<first 8 hex of sha256>.pth" and torch.hub's check_hash=True checks
    # exactly that prefix; we do the same.
    "vgg19": RemoteFile(
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        filename="vgg19-dcbb9e9d.pth",
        sha256="dcbb9e9d",
    ),
    # LPIPS (AlexNet, VGG16) and DISTS (VGG16) backbones, named and hashed the same way
    "vgg16": RemoteFile(
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        filename="vgg16-397923af.pth",
        sha256="397923af",
    ),
    "alexnet": RemoteFile(
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        filename="alexnet-owt-7be5be79.pth",
        sha256="7be5be79",
    ),
}


class WeightsUnavailableError(UserError, RuntimeError):
    """Pretrained backbone weights are neither given, nor cached, nor downloadable.

    A user error: sr-train / sr-eval print its message as one block, without a traceback.
    """


def _file(backbone: str) -> RemoteFile:
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid: {', '.join(BACKBONES)}")
    return BACKBONES[backbone]


def hub_cache_path(backbone: str) -> Path:
    """Where torch.hub (and torchvision) keep the file: ``$TORCH_HOME/hub/checkpoints/…``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _file(backbone).filename


def weights_present(backbone: str, weights_path: str | Path | None = None) -> bool:
    """True when the weights can be had without the network (not hash-checked here)."""
    if weights_path is not None:
        return Path(weights_path).expanduser().is_file()
    return hub_cache_path(backbone).is_file()


def unavailable_message(
    backbone: str, user: str, key: str, off: str | None, err: BaseException
) -> str:
    """One line: what is missing, where to put it, the key for a local copy and the off switch."""
    remote, path = _file(backbone), hub_cache_path(backbone)
    message = (
        f"{user} needs the torchvision {backbone} ImageNet weights, but {path} does not exist "
        f"(or is corrupt) and downloading it failed ({err}). Download {remote.url} on a "
        f"machine with internet access and place it at {path} (that is $TORCH_HOME/hub/"
        f"checkpoints/{remote.filename}; TORCH_HOME defaults to ~/.cache/torch), or pass "
        f"{key}=/path/to/{remote.filename}"
    )
    return message + (f"; {off}" if off else "") + "."


def load_backbone_state_dict(
    backbone: str,
    weights_path: str | Path | None = None,
    *,
    user: str,
    key: str,
    off: str | None = None,
) -> tuple[dict[str, Tensor], Path]:
    """The state dict of torchvision's ``backbone`` and the file it came from.

    ``user`` says who needs it ("the content loss"), ``key`` is the config key of a local
    copy, ``off`` how to do without; all three go into the error when nothing is available.
    """
    remote = _file(backbone)
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{key}={path} does not exist: point it at a torchvision {backbone} state "
                f"dict such as {remote.filename} (from {remote.url})"
            )
    else:
        path = hub_cache_path(backbone)
        try:
            download_file(remote.url, path, remote.sha256, remote.size)
        except (DownloadError, OSError) as err:
            raise WeightsUnavailableError(
                unavailable_message(backbone, user, key, off, err)
            ) from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle / zip errors of a file that is not a state dict
        raise ValueError(f"{path} is not a torchvision {backbone} state dict: {err}") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a torchvision {backbone} state dict")
    return state, path


def load_features(target: nn.Module, state: dict[str, Tensor], source: Path | str, backbone: str):
    """Copy torchvision's ``features.<i>.*`` into every conv of ``target`` named ``…<i>``.

    The nets that use these backbones (ours, torchmetrics' LPIPS slices and DISTS stages)
    keep torchvision's layer indices as module names, so index ``i`` finds its weights.
    """
    wanted = {}
    for name, module in target.named_modules():
        if isinstance(module, nn.Conv2d):
            index = name.rsplit(".", 1)[-1]
            for param in ("weight", "bias"):
                wanted[f"{name}.{param}"] = f"features.{index}.{param}"
    missing = sorted({k for k in wanted.values() if k not in state})
    if missing:
        raise ValueError(
            f"{source} is not a torchvision {backbone} state dict: it lacks "
            + ", ".join(missing[:4])
            + (" …" if len(missing) > 4 else "")
        )
    own = target.state_dict()
    for name, source_key in wanted.items():
        if own[name].shape != state[source_key].shape:
            raise ValueError(
                f"{source} does not fit torchvision's {backbone}: {source_key} has shape "
                f"{tuple(state[source_key].shape)}, expected {tuple(own[name].shape)}"
            )
    target.load_state_dict({n: state[k] for n, k in wanted.items()}, strict=False)
