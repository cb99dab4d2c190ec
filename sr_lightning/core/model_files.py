"""Every app's model, from any model file: :func:`resolve_model`, and ``model.init_from``.

Checkpoints, weights files (safetensors, ``.pt``), released models spandrel recognises, ONNX
and TorchScript exports all become a :class:`~sr_lightning.core.inference.Generator` here:
the net with its scale, channels and upsampling kind. ``sr-eval``, ``sr-upscale`` and
``sr-export`` share it, and :func:`init_net_from` (``model.init_from``) reads files the same
way. Files are read by :mod:`sr_lightning.core.model_file`, which checks every class name
they hold against the registry; nets are built by :func:`sr_lightning.core.registry.build_net`,
never by Hydra. No Lightning here.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from sr_lightning.core import zoo
from sr_lightning.core.derived import net_config
from sr_lightning.core.inference import Generator
from sr_lightning.core.model_file import (
    ModelFile,
    ModelMeta,
    load_net_state,
    parse_metadata,
    read_model_file,
    select_net_state,
)
from sr_lightning.core.registry import build_net, net_class
from sr_lightning.nets import upsampling_kind
from sr_lightning.nets.zoo import SpandrelNet

log = logging.getLogger(__name__)

TORCHSCRIPT_META = "sr_lightning.json"
EXPORT_SUFFIXES = (".onnx", ".torchscript")


def check_expected(meta: ModelMeta, expect: Mapping | None, source: str) -> None:
    """Raise when a requested method / scale / channels disagrees with what a file holds."""
    asked = {k: v for k, v in (expect or {}).items() if v is not None}
    clashes = [
        f"{'model' if key == 'method' else key}={value}"
        for key, value in asked.items()
        if getattr(meta, key, None) not in (None, "unknown")
        and str(getattr(meta, key)).lower() != str(value).lower()
    ]
    if clashes:
        raise ValueError(
            f"{source} is {meta.describe(every_scale=True)}; you asked {', '.join(clashes)}. "
            "Drop the override (it is read from the file) or pick another file."
        )


def _at_asked_scale(meta: ModelMeta, expect: Mapping | None) -> ModelMeta:
    """A multi-scale model (VDSR) is evaluated at any scale it was trained for."""
    asked = (expect or {}).get("scale")
    if asked is not None and int(asked) in meta.scales:
        return replace(meta, scale=int(asked))
    return meta


def generator_from_file(model: ModelFile, expect: Mapping | None = None) -> Generator:
    """The generator a file of ours describes (net spec in its metadata), weights loaded."""
    source = f"{model.kind} {model.path}"
    meta = _at_asked_scale(model.meta, expect)
    check_expected(meta, expect, source)
    if meta.net is None or meta.scale is None:
        raise ValueError(
            f"{source} carries no net description (method, scale, net); name the model: "
            "`model=<method> scale=<s> channels=<c>` with `weights=`."
        )
    net = build_net(meta.net, source)
    load_net_state(net, select_net_state(model.state, net), source)
    return Generator(
        net=net.eval(),
        scale=meta.scale,
        channels=meta.channels or 1,
        upsampling=upsampling_kind(net),
        method=meta.method,
        spec=meta.net,
        display=meta.display,
        scales=meta.scales,
        path=str(model.path),
    )


def generator_from_config(
    net_cfg: Mapping, state: Mapping | None, *, scale: int, channels: int, method: str, source: str
) -> Generator:
    """A net from the user's own config (``model=``: trusted, Hydra builds it), weights loaded."""
    import hydra.utils

    spec = net_config(json.loads(json.dumps(dict(net_cfg))), scale, channels)
    net = hydra.utils.instantiate(spec)
    if state is not None:
        load_net_state(net, select_net_state(state, net), source)
    return Generator(
        net=net.eval(),
        scale=int(scale),
        channels=int(channels),
        upsampling=upsampling_kind(net),
        method=method,
        spec=spec,
    )


def generator_from_release(model: ModelFile, expect: Mapping | None = None) -> Generator:
    """A released model spandrel recognises (see :mod:`sr_lightning.core.zoo`)."""
    source = f"weights {model.path}"
    found = zoo.detect(model.state, source)
    zoo.check_request(found, expect, source)
    spec = found.net_config()
    net = build_net(spec, source)
    load_net_state(net, found.state, source)
    log.debug("%s: detected %s (spandrel)", source, found.describe())
    return Generator(
        net=net.eval(),
        scale=found.scale,
        channels=found.channels,
        upsampling=upsampling_kind(net),
        method=found.name,
        spec=spec,
        detected=found.info(),
        path=str(model.path),
    )


class OnnxNet:
    """An ONNX generator run by onnxruntime, called like a PyTorch net on tensors."""

    def __init__(
        self, path: str | Path, device: str | torch.device = "cpu", threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {path}")
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(
                    "device=cuda but this onnxruntime has no CUDA provider "
                    "(install onnxruntime-gpu), or use device=cpu"
                )
            providers.insert(0, "CUDAExecutionProvider")
        try:
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = int(threads)
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{path} is not a loadable ONNX model: {err}") from err
        self.input_name = self.session.get_inputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(
            None, {self.input_name: x.detach().float().cpu().contiguous().numpy()}
        )
        return torch.from_numpy(out[0]).to(x.device)


def load_torchscript(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, dict]:
    """A TorchScript generator and its raw metadata. TorchScript runs code: trusted files only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TorchScript file not found: {path}")
    extra = {TORCHSCRIPT_META: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except RuntimeError as err:
        raise ValueError(f"{path} is not a loadable TorchScript archive: {err}") from err
    raw = json.loads(extra[TORCHSCRIPT_META]) if extra[TORCHSCRIPT_META] else {}
    return net.eval(), raw


def generator_from_export(
    path: Path, expect: Mapping | None, device: str | torch.device, kind: str | None = None
) -> Generator:
    """An ONNX or TorchScript file written by ``sr-export`` (its metadata says the rest)."""
    kind = kind if kind in ("onnx", "torchscript") else path.suffix.lower().lstrip(".")
    if kind == "onnx":
        net: Any = OnnxNet(path, device)
        raw = net.metadata
    else:
        net, raw = load_torchscript(path, device)
    source = f"{kind} file {path}"
    meta = parse_metadata(raw, source)
    if meta.scale is None or meta.channels is None:
        raise ValueError(
            f"{path} carries no sr-lightning metadata (scale, channels); export it with sr-export"
        )
    check_expected(meta, expect, source)
    upsampling = meta.upsampling
    if upsampling is None:  # older exports: the net class (looked up, never built) says it
        if meta.net is None:
            raise ValueError(
                f"{path} records neither 'upsampling' nor the net's class; re-export it"
            )
        upsampling = upsampling_kind(net_class(meta.net, source))
    return Generator(
        net=net,
        scale=meta.scale,
        channels=meta.channels,
        upsampling=upsampling,
        method=meta.method,
        spec=meta.net,
        display=meta.display,
        path=str(path),
    )


def model_request(cfg: Any) -> dict | None:
    """What ``resolve_model`` reads of an app's config: ``cfg.model``'s method and net, and the
    run's top-level scale and channels (a ``model=`` config holds none); None without a model."""
    model_cfg = cfg.get("model")
    if model_cfg is None:
        return None

    def plain(value: Any) -> Any:
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value

    request = {key: plain(model_cfg.get(key)) for key in ("method", "net")}
    return {**request, "scale": cfg.get("scale"), "channels": cfg.get("channels")}


def resolve_model(
    *,
    ckpt_path: str | Path | None = None,
    weights: str | Path | None = None,
    onnx: str | Path | None = None,
    torchscript: str | Path | None = None,
    model_cfg: Mapping | None = None,
    expect: Mapping | None = None,
    device: str | torch.device = "cpu",
) -> Generator:
    """The generator of a checkpoint, a weights file or an exported ONNX / TorchScript file.

    ``weights`` may be ``.safetensors`` (sr-export's, self-describing), a ``.pt``/``.pth``
    state dict (then ``model_cfg`` — ``cfg.model`` with scale and channels resolved — says
    what net it is, unless spandrel recognises a released model), or an ``.onnx`` /
    ``.torchscript`` file. ``expect`` (method / scale / channels the user asked for) must
    agree with what the file says.
    """
    sources = dict(ckpt_path=ckpt_path, weights=weights, onnx=onnx, torchscript=torchscript)
    given = {k: v for k, v in sources.items() if v not in (None, "")}
    if len(given) != 1:
        raise ValueError(
            "give exactly one model source: ckpt_path=CKPT, weights=FILE (with model=NAME for "
            f"a .pt/.pth state dict), onnx=FILE or torchscript=FILE; got {sorted(given) or 'none'}"
        )
    kind, path = next(iter(given.items()))
    path = Path(path).expanduser()
    if kind in ("onnx", "torchscript") or path.suffix.lower() in EXPORT_SUFFIXES:
        return generator_from_export(path, expect, device, kind)
    model = read_model_file(path)
    if kind == "ckpt_path" and model.kind != "checkpoint":
        raise ValueError(
            f"ckpt_path={path} is not an sr-train checkpoint; for a weights file use "
            "`weights=` (with `model=<method>` for a plain state dict)"
        )
    if model.meta is not None and model.meta.net is not None:
        return generator_from_file(model, expect)
    if model_cfg is None:
        return generator_from_release(model, expect)
    scale = (
        (expect or {}).get("scale")
        or model_cfg.get("scale")
        or (model.meta.scale if model.meta else None)
    )
    if scale is None:
        raise ValueError(f"weights={path} does not say its scale (no metadata); add scale=")
    return generator_from_config(
        model_cfg["net"],
        model.state,
        scale=int(scale),
        channels=int((expect or {}).get("channels") or model_cfg.get("channels") or 1),
        method=str(model_cfg.get("method") or "unknown"),
        source=f"weights {path}",
    )


# -- model.init_from ----------------------------------------------------------------------------


def init_net_from(
    net: nn.Module,
    path: str | Path,
    *,
    scale: int,
    channels: int,
    net_spec: Mapping | None,
    partial: bool,
) -> str:
    """Load ``model.init_from`` into a training run's net; returns a line saying what loaded.

    The file is any model file :func:`resolve_model` reads (an sr-train checkpoint, an
    sr-export file, a plain state dict, or a released model of the run's spandrel
    architecture). ``partial`` copies every tensor whose name and shape match (EDSR's x3/x4
    from its x2 model); otherwise every tensor must fit. ``net_spec`` is the run's
    ``model.net``: a file of another net class is refused, and when the tensors do not fit,
    the error names the ``model.net.*`` overrides that would build the file's net.
    """
    source = f"model.init_from={path}"
    model = read_model_file(path, ema=False)  # a checkpoint's live generator, not SRGAN's EMA
    meta = model.meta
    if meta is None and isinstance(net, SpandrelNet):
        found = zoo.load_release_into(net, model.state, source)
        return f"generator initialised from {path} ({found.describe()})"
    if meta is not None:
        _check_init_fits(meta, source, scale=scale, channels=channels, partial=partial)
        theirs = (meta.net or {}).get("_target_")
        net_name = (net_spec or {}).get("_target_")
        if theirs and net_name and theirs != net_name:
            raise ValueError(
                f"{source} holds a {theirs} net, this run builds {net_name}; initialise from "
                "a checkpoint of the same net"
            )
    given = select_net_state(model.state, net)
    if not partial:
        try:
            load_net_state(net, given, f"the generator weights of {source}")
        except ValueError as err:
            hint = _fitting_overrides(meta, net_spec)
            raise ValueError(f"{err}{hint}") from None
        return f"generator initialised from {path}" + (f" ({meta.describe()})" if meta else "")
    return _load_matching(net, given, source)


def _fitting_overrides(meta: ModelMeta | None, net_spec: Mapping | None) -> str:
    """`` The file's net is built by: model.net.num_blocks=3`` — the run's net settings that
    differ from the file's, as overrides (empty when the file does not say)."""
    if meta is None or not meta.net or not net_spec:
        return ""
    differ = [
        f"model.net.{key}={json.dumps(value)}"
        for key, value in meta.net.items()
        if key != "_target_" and net_spec.get(key) != value
    ]
    return f" The file's net is built by: {' '.join(differ)}" if differ else ""


def _check_init_fits(
    meta: ModelMeta, source: str, *, scale: int, channels: int, partial: bool
) -> None:
    """Channels must agree; the scale too unless only the tensors that fit are copied."""
    ours = {"scale": None if partial else scale, "channels": channels}
    clashes = [
        f"{key} {getattr(meta, key)} (file) vs {value} (this run)"
        for key, value in ours.items()
        if value is not None and getattr(meta, key) is not None and getattr(meta, key) != value
    ]
    if clashes:
        run = ModelMeta("run", scale, channels).describe().removeprefix("run ")
        raise ValueError(
            f"{source} holds a {meta.describe()} generator but this run trains {run}: "
            f"{'; '.join(clashes)}. Initialise from a file of the run's scale and channels, "
            "or set scale= / channels= to match the file."
        )


def _load_matching(net: nn.Module, given: Mapping, source: str) -> str:
    """Copy every tensor whose name and shape match; say which were kept fresh."""
    ours = net.state_dict()
    matched = {k: v for k, v in given.items() if k in ours and v.shape == ours[k].shape}
    if not matched:
        raise ValueError(
            f"{source}: no tensor of its net fits {type(net).__name__} (names or shapes "
            "differ); initialise from a checkpoint of the same net"
        )
    net.load_state_dict(matched, strict=False)
    skipped = sorted(set(ours) - set(matched))
    kept = f"; kept freshly initialised: {', '.join(skipped)}" if skipped else ""
    return f"{source}: {len(matched)} of {len(ours)} net tensors loaded{kept}"
