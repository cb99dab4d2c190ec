"""Reading any model file safely: one reader, one metadata schema, no Lightning.

Model files are untrusted input. Pickles (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) are read by
``torch.load(weights_only=True)`` (tensors and plain containers only), safetensors by its own
reader; whatever a file says about its net is checked against the registry
(:mod:`sr_lightning.core.registry`) as it is read, so every caller (``sr-eval``,
``sr-upscale``, ``sr-export``, ``model.init_from``, ``sr-train ckpt_path=``) refuses a crafted
file in the same way, before anything is built.

What a file can be:

* an ``sr-train`` checkpoint: the generator's weights (SRGAN: its EMA once it holds
  weights) and metadata from the checkpoint's ``sr_lightning`` entry and hyperparameters;
* an ``sr-export`` safetensors file: weights and string metadata in its header;
* a plain state dict, or one wrapped as released models wrap it (``params_ema``, ``params``,
  ``state_dict``, ``module.`` …): unwrapped by spandrel's ``canonicalize_state_dict``, with
  no metadata (``model=`` names the net, or spandrel recognises the architecture).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sr_lightning.core.registry import UnsafeFileError, check_file_config, renamed

__all__ = [
    "CHECKPOINT_KEY",
    "PICKLE_SUFFIXES",
    "ModelFile",
    "ModelMeta",
    "UnsafeFileError",
    "load_net_state",
    "read_checkpoint",
    "read_model_file",
    "select_net_state",
]

# the checkpoint entry sr-train writes: method, module, scale, channels (+ scales, ema)
CHECKPOINT_KEY = "sr_lightning"
# the ``format`` entry of sr-export's metadata
METADATA_FORMAT = "sr-lightning-generator"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
ACCEPTED = (
    "an sr-train checkpoint (.ckpt), an sr-export file (.safetensors, .onnx, .torchscript) or "
    "a PyTorch state dict (.pt/.pth/.bin, or .safetensors)"
)

# the live generator and SRGAN's EMA copy inside an sr-train checkpoint's state dict
NET_PREFIX = "net."
EMA_PREFIX = "ema.module."
EMA_COUNT = "ema.n_averaged"
# leading key prefixes of generator weights saved from a wrapper (DDP, GAN, Lightning)
WRAPPER_PREFIXES = ("net.", "generator.", "model.", "module.")

_LIST_LIMIT = 8


@dataclass(frozen=True)
class ModelMeta:
    """What a file of ours says about its generator (one schema for every format)."""

    method: str = "unknown"
    scale: int | None = None
    channels: int | None = None
    net: dict | None = None  # {"_target_": registered name, **plain kwargs}
    upsampling: str | None = None
    scales: tuple[int, ...] = ()  # a multi-scale model (VDSR) runs at each of these
    display: dict | None = None
    module: str | None = None  # the LightningModule that trained it (information only)
    ema: bool = False

    def describe(self, every_scale: bool = False) -> str:
        """``espcn x3 luma`` — how errors and logs name a model; with ``every_scale``, a
        multi-scale model's scales (``vdsr x2/x3/x4 luma``), for errors about the scale."""
        colour = {1: "luma", 3: "RGB"}.get(self.channels, f"{self.channels}-channel")
        many = every_scale and len(self.scales) > 1
        scales = "/".join(f"x{s}" for s in sorted(self.scales)) if many else f"x{self.scale}"
        return f"{self.method} {scales} {colour}"


@dataclass
class ModelFile:
    """A model file's generator weights and, for files of ours, its metadata."""

    path: Path
    kind: str  # "checkpoint" or "weights"
    state: dict[str, Tensor] = field(repr=False)
    meta: ModelMeta | None = None


# -- reading files ------------------------------------------------------------------------------


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


def safe_torch_load(path: Path, what: str, mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)`` with one clear error for every way it can fail."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        detail = _unpickler_detail(str(err))
        if "GLOBAL" in detail or "global" in detail:
            raise UnsafeFileError(
                f"refusing to load {what} {path}: it is refused as unsafe — it holds objects "
                "other than tensors and plain containers, which could run code when unpickled "
                "(possibly malicious). sr-lightning never loads such files. If you made this "
                "file yourself and trust it, re-save its tensors as a plain state dict or a "
                f".safetensors file. ({detail})"
            ) from None
        raise ValueError(
            f"{what} {path} is not a model file the safe loader reads: {detail}. Give {ACCEPTED}."
        ) from None
    except Exception as err:  # torch raises KeyError, RuntimeError, EOFError, …
        raise ValueError(
            f"{what} {path} is not a readable PyTorch file (truncated, corrupt or not a model "
            f"file: {type(err).__name__}). Give {ACCEPTED}."
        ) from None


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}). Give {ACCEPTED}."
        ) from None
    return state, dict(header)


def _as_int(value: Any, key: str, source: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: metadata {key}={value!r} is not an integer") from None


def parse_metadata(raw: Mapping[str, Any], source: str) -> ModelMeta:
    """The one metadata schema: strings (safetensors, ONNX, TorchScript) or typed values
    (checkpoints) alike; the net spec is checked against the registry here."""
    net = raw.get("net")
    if isinstance(net, str):
        try:
            net = json.loads(net)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: metadata 'net' is not valid JSON: {err}") from None
    if net is not None:
        if not isinstance(net, Mapping):
            raise ValueError(f"{source}: metadata 'net' is not a mapping")
        net = renamed(dict(net))
        check_file_config(net, source)
    scales = raw.get("scales") or ()
    if isinstance(scales, str):
        scales = json.loads(scales) if scales.startswith("[") else scales.split(",")
    display = raw.get("display")
    if isinstance(display, str):
        display = json.loads(display) if display.startswith("{") else None
    upsampling = raw.get("upsampling")
    if upsampling is not None and upsampling not in ("pre", "post"):
        raise ValueError(f"{source}: metadata upsampling={upsampling!r} is not 'pre' or 'post'")
    return ModelMeta(
        method=str(raw.get("method") or "unknown"),
        scale=_as_int(raw.get("scale"), "scale", source),
        channels=_as_int(raw.get("channels"), "channels", source),
        net=net,
        upsampling=upsampling,
        scales=tuple(int(s) for s in scales),
        display=dict(display) if isinstance(display, Mapping) else None,
        module=str(raw["module"]) if raw.get("module") else None,
        ema=str(raw.get("ema", "")).lower() in ("true", "1"),
    )


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """An sr-train (Lightning) checkpoint, read safely; its stored configs are checked.

    The hyperparameters (net, optimizer, scheduler, loss, discriminator) may name registered
    classes only and hold plain values: :class:`UnsafeFileError` otherwise.
    """
    path = Path(path).expanduser()
    return _checked_checkpoint(safe_torch_load(path, "checkpoint", mmap), path)


def _is_checkpoint(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and "state_dict" in obj
        and (CHECKPOINT_KEY in obj or "hyper_parameters" in obj)
    )


def _checked_checkpoint(ckpt: Any, path: Path) -> dict:
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(
            f"{path} is not an sr-train checkpoint (no 'state_dict'). For a plain state dict of "
            "the net use `weights=` with `model=<method>` instead of `ckpt_path=`."
        )
    source = f"checkpoint {path}"
    hparams = ckpt.get("hyper_parameters")
    if hparams is not None:
        if not isinstance(hparams, Mapping):
            raise ValueError(f"{source}: its hyper_parameters are not a mapping")
        ckpt["hyper_parameters"] = hparams = renamed(dict(hparams))
        check_file_config(hparams, source)
    check_file_config(ckpt.get(CHECKPOINT_KEY) or {}, source)
    return ckpt


def checkpoint_meta(ckpt: Mapping, source: str) -> ModelMeta:
    """The metadata of a checkpoint: its ``sr_lightning`` entry, then its hyperparameters."""
    entry = dict(ckpt.get(CHECKPOINT_KEY) or {})
    hparams = ckpt.get("hyper_parameters") or {}
    raw = {
        "method": entry.get("method", hparams.get("method")),
        "module": entry.get("module", hparams.get("_target_")),
        "scale": entry.get("scale", hparams.get("scale")),
        "channels": entry.get("channels", hparams.get("channels")),
        "scales": entry.get("scales") or hparams.get("scales") or (),
        "net": hparams.get("net"),
        "display": hparams.get("display"),
        "ema": _ema_started(ckpt.get("state_dict") or {}),
    }
    return parse_metadata(raw, source)


def _ema_started(state: Mapping[str, Any]) -> bool:
    count = state.get(EMA_COUNT)
    return isinstance(count, Tensor) and bool(count.item() > 0)


def checkpoint_generator_state(ckpt: Mapping, ema: bool = True) -> dict[str, Tensor]:
    """The generator's weights of an sr-train checkpoint: SRGAN's EMA once it holds weights
    (unless ``ema=False``: the live generator, which ``init_from`` continues training)."""
    state = ckpt["state_dict"]
    prefix = EMA_PREFIX if ema and _ema_started(state) else NET_PREFIX
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _plain_state(obj: Any, path: Path) -> dict[str, Tensor]:
    """A released file's tensors, unwrapped by spandrel's canonicaliser."""
    from spandrel import canonicalize_state_dict

    if isinstance(obj, Mapping):
        obj = canonicalize_state_dict(dict(obj))
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(v, Tensor) for v in obj.values())
    ):
        raise ValueError(
            f"{path} holds no state dict of tensors (expected a raw state dict, or one under "
            "'state_dict', 'params' or 'params_ema')."
        )
    return dict(obj)


def read_model_file(path: str | Path, ema: bool = True) -> ModelFile:
    """Weights and metadata of any model file sr-lightning reads (see the module docstring)."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        state, header = _read_safetensors(path)
        source = f"weights {path}"
        meta = parse_metadata(header, source) if header.get("scale") or header.get("net") else None
        if meta is None:
            state = _plain_state(state, path)
        return ModelFile(path, "weights", state, meta)
    if suffix not in PICKLE_SUFFIXES:
        raise ValueError(f"{path}: unsupported model file type {suffix!r}. Give {ACCEPTED}.")
    obj = safe_torch_load(path, "model file")
    if _is_checkpoint(obj):
        ckpt = _checked_checkpoint(obj, path)
        meta = checkpoint_meta(ckpt, f"checkpoint {path}")
        return ModelFile(path, "checkpoint", checkpoint_generator_state(ckpt, ema), meta)
    return ModelFile(path, "weights", _plain_state(obj, path), None)


# -- fitting a state dict to a net --------------------------------------------------------------


def select_net_state(state: Mapping[str, Tensor], net: nn.Module) -> dict[str, Tensor]:
    """The net's entries of a state dict saved from a wrapper (``net.``, ``module.``, …)."""
    wanted = set(net.state_dict())
    sd = dict(state)
    for _ in range(len(WRAPPER_PREFIXES)):
        if wanted & set(sd):
            break
        prefix = next((p for p in WRAPPER_PREFIXES if any(k.startswith(p) for k in sd)), None)
        if prefix is None:
            break
        sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


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
