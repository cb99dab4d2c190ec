"""Loading checkpoints and weight files safely, and rebuilding modules from them.

Checkpoints and weights are untrusted input: a pickle can run code when it is loaded. Every
file here goes through ``torch.load(weights_only=True)`` (tensors and plain containers only)
or safetensors, never through the full unpickler. Rebuilding a module from a checkpoint's
hyperparameters instantiates the ``_target_`` classes they name, which would hand code
execution back to the file's author; so only classes under trusted module prefixes
(:data:`TRUSTED_PREFIXES`, plus ``$SR_TRUSTED_MODULES``) are ever imported.

Used by ``sr-eval``, ``sr-upscale``, ``sr-export`` and SRGAN's ``init_from``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sr_lightning.core.builders import build_module, to_plain
from sr_lightning.modules.base import CHECKPOINT_KEY, SRModule

__all__ = [
    "TRUSTED_PREFIXES",
    "UnsafeFileError",
    "checkpoint_info",
    "load_checkpoint",
    "load_net_state",
    "load_weights",
    "module_from_checkpoint",
    "module_from_weights",
]

# Modules whose classes a checkpoint or weights file may ask us to instantiate.
TRUSTED_PREFIXES = ("sr_lightning.", "torch.nn.", "torch.optim.")
TRUSTED_ENV = "SR_TRUSTED_MODULES"

# Classes that moved since a checkpoint may have been written: old prefix -> new prefix.
# (Before the apps/core/runtime layout, the lr schedules lived at sr_lightning.schedules.)
MOVED_MODULES = {"sr_lightning.schedules.": "sr_lightning.core.schedules."}

# Leading key prefixes of generator weights saved from a wrapper (LightningModule, DDP, GAN).
NET_PREFIXES = ("net.", "generator.", "module.", "model.")

# The base module registers its (optionally compiled) net a second time under this name.
_ALIAS_PREFIX = "_net_forward."

_LIST_LIMIT = 8


class UnsafeFileError(RuntimeError):
    """A checkpoint or weights file that would need code execution to load."""


# -- reading files ---------------------------------------------------------------------------


def _safe_torch_load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickler_detail(str(err))
        if "GLOBAL" in detail or "global" in detail:
            raise UnsafeFileError(
                f"refusing to load {what} {path}: it holds objects other than tensors and plain "
                "containers, which could run code when unpickled (possibly malicious). "
                "sr-lightning never loads such files. If you made this file yourself and trust "
                f"it, re-save its tensors as a plain state dict or a .safetensors file. ({detail})"
            ) from None
        raise ValueError(
            f"{what} {path} is not a PyTorch file the safe loader accepts (corrupt, or not "
            f"written by torch.save): {detail}"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"{what} {path} is not a readable PyTorch file (truncated or corrupt?): {err}"
        ) from err


def _unpickler_detail(message: str) -> str:
    """The line of torch's weights-only error that says what was refused."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line:
            return line
    for i, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            rest = line.split("WeightsUnpickler error", 1)[1].strip(" :")
            return rest or (lines[i + 1] if i + 1 < len(lines) else line)
    return lines[-1] if lines else "unknown error"


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint as a dict, loaded on the CPU with the safe (weights-only) unpickler."""
    path = Path(path).expanduser()
    ckpt = _safe_torch_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(
            f"{path} is not a Lightning checkpoint (no 'state_dict'). For a plain state dict of "
            "the net use `weights=` with `model=<method>` instead of `ckpt_path=`."
        )
    if isinstance(ckpt.get("hyper_parameters"), Mapping):
        ckpt["hyper_parameters"] = _with_current_targets(ckpt["hyper_parameters"])
    return ckpt


def _with_current_targets(cfg: Any) -> Any:
    """``cfg`` with every ``_target_`` under a moved module renamed to where it lives now."""
    if isinstance(cfg, Mapping):
        out = {k: _with_current_targets(v) for k, v in cfg.items()}
        target = out.get("_target_")
        for old, new in MOVED_MODULES.items():
            if isinstance(target, str) and target.startswith(old):
                out["_target_"] = new + target[len(old) :]
        return out
    if isinstance(cfg, list | tuple):
        return type(cfg)(_with_current_targets(v) for v in cfg)
    return cfg


def checkpoint_info(ckpt: Mapping) -> dict:
    """``{method, module, scale, channels}`` of a checkpoint written by ``sr-train``.

    Read from the metadata that ``SRModule.on_save_checkpoint`` stores, with missing entries
    filled from the hyperparameters.
    """
    meta = dict(ckpt.get(CHECKPOINT_KEY) or {})
    hparams = ckpt.get("hyper_parameters") or {}
    info = {
        "method": meta.get("method", hparams.get("method")),
        "module": meta.get("module", hparams.get("_target_")),
        "scale": meta.get("scale", hparams.get("scale")),
        "channels": meta.get("channels", hparams.get("channels")),
    }
    if info["scale"] is not None:
        info["scale"] = int(info["scale"])
    if info["channels"] is not None:
        info["channels"] = int(info["channels"])
    return info


def describe(info: Mapping) -> str:
    """``espcn x3 luma`` — how errors and logs name a model."""
    colour = {1: "luma", 3: "RGB"}.get(info.get("channels"), f"{info.get('channels')}-channel")
    return f"{info.get('method')} x{info.get('scale')} {colour}"


def check_expected(info: Mapping, expect: Mapping | None, source: str) -> None:
    """Raise when a requested method / scale / channels disagrees with what a file holds."""
    asked = {k: v for k, v in (expect or {}).items() if v is not None}
    clashes = [
        f"{'model' if key == 'method' else key}={value}"
        for key, value in asked.items()
        if info.get(key) is not None and str(info[key]).lower() != str(value).lower()
    ]
    if clashes:
        raise ValueError(
            f"{source} is {describe(info)}; you asked {', '.join(clashes)}. "
            "Drop the override (it is read from the file) or pick another file."
        )


# -- trusted rebuilding ------------------------------------------------------------------------


def trusted_prefixes() -> tuple[str, ...]:
    extra = [p.strip() for p in os.environ.get(TRUSTED_ENV, "").split(",") if p.strip()]
    return TRUSTED_PREFIXES + tuple(p if p.endswith(".") else f"{p}." for p in extra)


def _targets(cfg: Any, where: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(cfg, Mapping):
        for key, value in cfg.items():
            path = f"{where}.{key}" if where else str(key)
            if key == "_target_":
                yield path, value
            else:
                yield from _targets(value, path)
    elif isinstance(cfg, list | tuple):
        for i, value in enumerate(cfg):
            yield from _targets(value, f"{where}[{i}]")


def check_trusted_targets(cfg: Any, source: str) -> None:
    """Refuse configs from a file that name classes outside the trusted modules."""
    allowed = trusted_prefixes()
    bad = [
        f"{path}={target!r}"
        for path, target in _targets(cfg)
        if not (isinstance(target, str) and target.startswith(allowed))
    ]
    if bad:
        raise UnsafeFileError(
            f"refusing {source}: its config names classes outside the trusted modules "
            f"{', '.join(allowed)}: {', '.join(bad[:_LIST_LIMIT])}. A crafted file could run "
            f"code this way. If these are your own classes, add their package to "
            f"${TRUSTED_ENV} (comma-separated module prefixes)."
        )
    # inside trusted packages too, only classes: a function (a downloader, say) is no net
    import hydra.utils

    for path, target in _targets(cfg):
        try:
            obj = hydra.utils.get_object(target)
        except Exception as err:  # ImportError, AttributeError, ...: name it, do not crash
            raise ValueError(f"{source}: {path}={target!r} does not exist here ({err})") from None
        if not isinstance(obj, type):
            raise UnsafeFileError(f"refusing {source}: {path}={target!r} is not a class")


def _module_class(name: str | None, source: str) -> type[SRModule]:
    import hydra.utils

    if not name:
        raise ValueError(
            f"{source} has no sr_lightning metadata naming its module (not written by sr-train?). "
            "Load its generator with `model=<method> weights=<file>` instead."
        )
    check_trusted_targets({"_target_": name}, source)
    cls = hydra.utils.get_class(name)
    if not (isinstance(cls, type) and issubclass(cls, SRModule)):
        raise UnsafeFileError(f"refusing {source}: {name} is not an SRModule class")
    return cls


def offline_hparams(hparams: Mapping) -> dict:
    """Hyperparameters for rebuilding a module to run it, not to train it.

    The VGG of a content loss is built without pretrained weights (they are not part of the
    checkpoint, and inference does not use them) and ``init_from`` is dropped (the loaded
    state dict replaces whatever it would have loaded).
    """
    out = dict(to_plain(hparams))
    loss = out.get("loss")
    if isinstance(loss, Mapping) and isinstance(loss.get("content"), Mapping):
        content = dict(loss["content"])
        content.update(pretrained=False, weights_path=None)
        out["loss"] = {**loss, "content": content}
    if "init_from" in out:
        out["init_from"] = None
    return out


@contextlib.contextmanager
def _quiet_offline_vgg() -> Iterator[None]:
    """The random-VGG warning is for training; a rebuilt module never uses its loss."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*randomly initialised VGG19.*")
        yield


# -- state dicts ----------------------------------------------------------------------------


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f", … ({len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else "")


def state_dict_mismatch(expected: Mapping[str, Tensor], given: Mapping[str, Tensor]) -> str | None:
    """A description of missing keys, unexpected keys and shape mismatches, or None."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {tuple(given[k].shape)} vs {tuple(expected[k].shape)} expected"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches: {_listing(shapes)}")
    return "; ".join(parts) or None


def load_net_state(
    net: nn.Module, state_dict: Mapping[str, Tensor], source: str = "weights"
) -> None:
    """Strict load that reports every missing key, unexpected key and shape mismatch at once."""
    problem = state_dict_mismatch(net.state_dict(), state_dict)
    if problem:
        raise ValueError(
            f"{source} do not fit {type(net).__name__}: {problem}. Check model= and its net "
            "settings (scale, channels, widths) against the file."
        )
    net.load_state_dict(state_dict, strict=True)


def _load_module_state(module: SRModule, state_dict: Mapping[str, Tensor], source: str) -> None:
    """Strict load of a whole module, ignoring the net's alias (plain or compiled)."""
    given = {k: v for k, v in state_dict.items() if not k.startswith(_ALIAS_PREFIX)}
    expected = {k: v for k, v in module.state_dict().items() if not k.startswith(_ALIAS_PREFIX)}
    problem = state_dict_mismatch(expected, given)
    if problem:
        raise ValueError(f"{source} does not fit {type(module).__name__}: {problem}")
    module.load_state_dict(given, strict=False)


def select_net_state(state_dict: Mapping[str, Tensor], net: nn.Module) -> dict[str, Tensor]:
    """The net's entries of a state dict saved from a wrapper (``net.``, ``module.``, …)."""
    wanted = set(net.state_dict())
    sd = dict(state_dict)
    for _ in range(len(NET_PREFIXES)):
        if wanted & set(sd):
            break
        prefix = next((p for p in NET_PREFIXES if any(k.startswith(p) for k in sd)), None)
        if prefix is None:
            break
        sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def _parse_metadata(raw: Mapping[str, str] | None, path: Path) -> dict:
    meta: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key in ("scale", "channels"):
            try:
                meta[key] = int(value)
            except ValueError:
                raise ValueError(f"{path}: metadata {key}={value!r} is not an integer") from None
        elif key == "net":
            try:
                meta[key] = json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: metadata 'net' is not valid JSON: {err}") from None
        else:
            meta[key] = value
    return meta


def load_weights(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """A generator state dict and its metadata (``method``, ``scale``, ``channels``, ``net``).

    ``.safetensors`` files carry metadata in their header (written by ``sr-export``);
    ``.pt`` / ``.pth`` / ``.ckpt`` files are loaded weights-only and may hold a raw state
    dict, ``{"state_dict": …}`` (a Lightning checkpoint: its metadata is used), or BasicSR's
    ``{"params": …}`` / ``{"params_ema": …}`` (the EMA weights win).
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                raw_meta = f.metadata()
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
        return state, _parse_metadata(raw_meta, path)
    if suffix not in (".pt", ".pth", ".ckpt", ".bin"):
        raise ValueError(
            f"weights={path}: unsupported file type {suffix!r}; use .safetensors or a "
            ".pt/.pth state dict (sr-export writes both)."
        )
    obj = _safe_torch_load(path, "weights file")
    meta: dict = {}
    if isinstance(obj, Mapping):
        if CHECKPOINT_KEY in obj:
            meta = {k: v for k, v in checkpoint_info(obj).items() if k != "module"}
            hparams = obj.get("hyper_parameters") or {}
            if isinstance(hparams.get("net"), Mapping):
                meta["net"] = dict(hparams["net"])
        for key in ("params_ema", "params", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(
            f"{path} holds no state dict of tensors (expected a raw state dict, or one under "
            "'state_dict', 'params' or 'params_ema')."
        )
    return dict(obj), meta


# -- rebuilding modules ------------------------------------------------------------------------


def module_from_checkpoint(
    path: str | Path, expect: Mapping | None = None, map_location: str | torch.device = "cpu"
) -> SRModule:
    """The ``sr-train`` module of a checkpoint, rebuilt from its hyperparameters, in eval mode.

    ``expect`` maps ``method`` / ``scale`` / ``channels`` to what the caller asked for; a
    disagreement with the checkpoint is a ValueError saying what the checkpoint holds.
    """
    path = Path(path).expanduser()
    ckpt = load_checkpoint(path)
    info = checkpoint_info(ckpt)
    source = f"checkpoint {path}"
    asked_scale = (expect or {}).get("scale")
    trained_scales = [int(x) for x in (ckpt.get("hyper_parameters") or {}).get("scales") or []]
    if asked_scale is not None and int(asked_scale) in trained_scales:
        # a multi-scale model (VDSR) evaluates at any scale it was trained for
        info = {**info, "scale": int(asked_scale)}
    check_expected(info, expect, source)
    cls = _module_class(info["module"], source)
    hparams = offline_hparams(ckpt.get("hyper_parameters") or {})
    check_trusted_targets(hparams, source)
    with _quiet_offline_vgg():
        module = cls(**hparams)
    _load_module_state(module, ckpt["state_dict"], source)
    module.scale = info["scale"]
    return module.to(map_location).eval()


def module_from_weights(model_cfg: Mapping | None, path: str | Path) -> SRModule:
    """A module built from ``model_cfg`` (``cfg.model``) with a generator's weights loaded.

    With ``model_cfg=None`` the net comes from the file's metadata alone (safetensors from
    ``sr-export``), wrapped in the base module, which knows pre-upsampling and evaluation.
    """
    path = Path(path).expanduser()
    state, meta = load_weights(path)
    return module_from_weights_state(model_cfg, state, meta, f"weights {path}")


def module_from_weights_state(
    model_cfg: Mapping | None, state: Mapping[str, Tensor], meta: Mapping, source: str
) -> SRModule:
    """:func:`module_from_weights` for an already loaded ``(state, meta)`` pair."""
    if model_cfg is None:
        if not isinstance(meta.get("net"), Mapping) or "scale" not in meta:
            raise ValueError(
                f"{source} carries no model metadata (method, scale, net); name the model: "
                "`model=<method> scale=<s>` (and channels=) with `weights=`."
            )
        net_cfg = dict(meta["net"])
        check_trusted_targets(net_cfg, source)
        module = SRModule(
            net=net_cfg,
            optimizer=None,
            scale=int(meta["scale"]),
            channels=int(meta.get("channels", 1)),
        )
        module.method = str(meta.get("method", "unknown"))
    else:
        with _quiet_offline_vgg():
            module = build_module(offline_hparams(model_cfg))
    load_net_state(module.net, select_net_state(state, module.net), source)
    return module.eval()
