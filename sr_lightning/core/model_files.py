"""Reading a generator back from any file sr-lightning reads or writes.

Checkpoints, weights files (safetensors, ``.pt``), ONNX and TorchScript exports all become a
:class:`~sr_lightning.core.inference.Generator` here; ``sr-upscale``, ``sr-eval`` and ``sr-export``
(to verify what it wrote) share this one loader.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sr_lightning.core.inference import Generator, generator_from_module
from sr_lightning.nets import upsampling_kind

METADATA_FORMAT = "sr-lightning-generator"
TORCHSCRIPT_META = "sr_lightning.json"


def parse_metadata(raw: Mapping[str, str], path: Path) -> dict[str, Any]:
    """Typed metadata (``scale``/``channels`` ints, ``net`` dict); errors name the file."""
    meta: dict[str, Any] = dict(raw)
    missing = [k for k in ("scale", "channels") if k not in meta]
    if missing:
        raise ValueError(
            f"{path} carries no sr-lightning metadata ({', '.join(missing)} missing); export it "
            "with sr-export, or use `weights=` with `model=<method> scale=<s> channels=<c>`"
        )
    try:
        meta["scale"] = int(meta["scale"])
        meta["channels"] = int(meta["channels"])
    except ValueError:
        raise ValueError(f"{path}: metadata scale/channels are not integers: {raw}") from None
    if isinstance(meta.get("net"), str):
        try:
            meta["net"] = json.loads(meta["net"])
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: metadata 'net' is not valid JSON: {err}") from None
    return meta


def _upsampling_of(meta: Mapping[str, Any], path: Path) -> str:
    """The file's recorded upsampling kind; else the one its net class declares."""
    if "upsampling" in meta:
        return str(meta["upsampling"])
    net_cfg = meta.get("net")
    if not isinstance(net_cfg, Mapping) or "_target_" not in net_cfg:
        raise ValueError(
            f"{path} records neither 'upsampling' nor the net's class; re-export it with sr-export"
        )
    import hydra.utils

    from sr_lightning.core import checkpoints

    checkpoints.check_trusted_targets(net_cfg, f"metadata of {path}")
    return upsampling_kind(hydra.utils.get_class(net_cfg["_target_"]))


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


def load_generator(
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
    state dict (then ``model_cfg`` — ``cfg.model`` with scale and channels — says what net it
    is), or an ``.onnx`` / ``.torchscript`` file. ``expect`` (method / scale / channels the
    user asked for) must agree with what the file says.
    """
    given = {
        k: v
        for k, v in dict(
            ckpt_path=ckpt_path, weights=weights, onnx=onnx, torchscript=torchscript
        ).items()
        if v not in (None, "")
    }
    if len(given) != 1:
        raise ValueError(
            "give exactly one model source: ckpt_path=CKPT, weights=FILE (with model=NAME for "
            f"a .pt/.pth state dict), onnx=FILE or torchscript=FILE; got {sorted(given) or 'none'}"
        )
    from sr_lightning.core import checkpoints  # imports Lightning: only when a checkpoint is read

    kind, path = next(iter(given.items()))
    path = Path(path).expanduser()
    if kind == "weights" and path.suffix.lower() in (".onnx", ".torchscript"):
        kind = path.suffix.lower().lstrip(".")
    if kind == "ckpt_path":
        module = checkpoints.module_from_checkpoint(path, expect=expect)
        return generator_from_module(module)
    if kind == "weights":
        state, meta = checkpoints.load_weights(path)
        has_net = isinstance(meta.get("net"), Mapping)
        if not has_net and model_cfg is None:  # not ours: a released model spandrel knows
            from sr_lightning.core.zoo import module_from_release

            return generator_from_module(module_from_release(state, f"weights {path}", expect)[0])
        if has_net:
            checkpoints.check_expected(meta, expect, f"weights {path}")
        elif model_cfg is None:
            raise ValueError(
                f"weights={path} carries no model metadata; name the model: "
                "`model=<method> scale=<s> channels=<c>` (or export it with sr-export)"
            )
        module = checkpoints.module_from_weights(None if has_net else model_cfg, path)
        return generator_from_module(module)
    if kind == "onnx":
        net = OnnxNet(path, device)
        raw = net.metadata
    else:
        net, raw = load_torchscript(path, device)
    meta = parse_metadata(raw, path)
    checkpoints.check_expected(meta, expect, f"{kind} file {path}")
    return Generator(
        net=net,
        scale=meta["scale"],
        channels=meta["channels"],
        upsampling=_upsampling_of(meta, path),
        method=str(meta.get("method", "unknown")),
    )
