"""sr-export: the generator alone as ONNX, safetensors or TorchScript; and loading it back.

    sr-export ckpt_path=CKPT format=onnx|safetensors|torchscript [output=FILE]

Only the generator is written: no discriminator, VGG, optimizer state or EMA shadow (an
SRGAN's EMA weights *are* the generator written, when it has them). Every format carries
the same metadata (``method``, ``scale``, ``channels``, ``upsampling`` and ``net``, the JSON
of the net's config with its ``_target_``), so ``sr-upscale weights=FILE`` and ``sr-eval``
need nothing else:

* safetensors: the header's ``__metadata__``;
* ONNX: the model's ``metadata_props``; opset >= 17, dynamic batch, height and width;
* TorchScript: an extra file ``sr_lightning.json`` in the archive.

Pre-upsampling nets (SRCNN, VDSR) are exported *without* the bicubic upscale: MATLAB's
imresize is a pair of matrices that depend on the image size, which a graph with dynamic
height and width cannot hold. Their graphs take the bicubic-upsampled image (same size in and
out) and record ``upsampling: pre``; ``sr-upscale`` does the resize itself.

Each export is checked against the PyTorch net before it is published (ONNX with
onnxruntime at two input sizes) and the max abs difference is printed. Files are written to
a temporary name in the output folder and renamed into place, so an interrupted export
leaves nothing half-written, and an existing file is kept unless ``overwrite=true``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sr_lightning.config import CONF_DIR, register_resolvers
from sr_lightning.errors import run_cli
from sr_lightning.inference import Generator, generator_from_module, generator_net

log = logging.getLogger("sr_lightning.export")

register_resolvers()

FORMATS = {"onnx": ".onnx", "safetensors": ".safetensors", "torchscript": ".torchscript"}
METADATA_FORMAT = "sr-lightning-generator"
TORCHSCRIPT_META = "sr_lightning.json"
MIN_OPSET = 17
# fp32 exports agree with eager PyTorch to ~1e-6; this only catches broken graphs.
VERIFY_ATOL = 1e-4


class ExportError(RuntimeError):
    """An export that failed its check against the PyTorch net."""


# -- metadata -----------------------------------------------------------------------------


def net_config(module: nn.Module) -> dict:
    """The net's plain config (with ``_target_``) from the module's hyperparameters."""
    hparams = getattr(module, "hparams", {}) or {}
    cfg = hparams.get("net")
    if not isinstance(cfg, Mapping) or "_target_" not in cfg:
        raise ValueError(
            f"{type(module).__name__} has no net config with a _target_ in its hyperparameters; "
            "cannot record how to rebuild the generator"
        )
    return json.loads(json.dumps(OmegaConf.to_container(OmegaConf.create(dict(cfg)), resolve=True)))


def export_metadata(module: nn.Module, net: nn.Module, source: str = "") -> dict[str, str]:
    """String metadata shared by every format (safetensors and ONNX only hold strings)."""
    return {
        "format": METADATA_FORMAT,
        "method": str(getattr(module, "method", "unknown")),
        "scale": str(int(module.scale)),
        "channels": str(int(module.channels)),
        "upsampling": str(getattr(net, "upsampling", "post")),
        "net": json.dumps(net_config(module), sort_keys=True),
        "source": source,
    }


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


def _upsampling_of(meta: Mapping[str, Any]) -> str:
    if "upsampling" in meta:
        return str(meta["upsampling"])
    target = str((meta.get("net") or {}).get("_target_", ""))
    return "pre" if target.rsplit(".", 1)[-1] in ("SRCNN", "VDSR") else "post"


# -- writing ------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary path in ``path``'s folder, renamed to ``path`` only if the block succeeds.

    Without ``overwrite``, an existing file is an error, checked before and at the rename
    (a hard link, which fails if the name exists, where the file system supports one).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=true to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # hidden, and ending in the real suffix so that writers and readers know the format
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".part{path.suffix}"
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        publish(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename a finished temporary file into place (atomic; never replaces unless asked)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists; pass overwrite=true to replace it") from None
    except OSError:  # no hard links here (some network / FUSE file systems)
        if path.exists():
            raise FileExistsError(
                f"{path} already exists; pass overwrite=true to replace it"
            ) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def standalone_generator(module: nn.Module) -> nn.Module:
    """A CPU float32 eval-mode copy of the generator (EMA weights for SRGAN)."""
    net = generator_net(module)
    net = copy.deepcopy(getattr(net, "_orig_mod", net))  # unwrap torch.compile
    return net.float().cpu().eval().requires_grad_(False)


def _probe_input(meta: Mapping[str, str], batch: int, h: int, w: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(h * 1000 + w)
    return torch.rand(batch, int(meta["channels"]), h, w, generator=gen)


def _probe_sizes(meta: Mapping[str, str]) -> list[tuple[int, int, int]]:
    """Two input shapes (batch, h, w) unlike the export's, to prove dynamic shapes work."""
    k = int(meta["scale"]) if meta["upsampling"] == "pre" else 1
    return [(1, 24 * k, 20 * k), (2, 17 * k, 31 * k)]


def _check(name: str, diffs: list[float]) -> float:
    worst, atol = max(diffs), VERIFY_ATOL
    print(f"{name}: max abs diff vs PyTorch {worst:.3g} over {len(diffs)} input sizes")
    if not worst <= atol:
        raise ExportError(f"{name} export differs from the PyTorch net by {worst:.3g} > {atol}")
    return worst


def write_safetensors(net: nn.Module, meta: dict[str, str], path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    save_file(state, str(path), metadata=meta)


def write_torchscript(net: nn.Module, meta: dict[str, str], path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still works
        try:
            scripted = torch.jit.script(net)
        except Exception as err:  # some nets do not script; tracing still gives dynamic H/W
            log.warning("torch.jit.script failed (%s); tracing instead", err)
            scripted = torch.jit.trace(net, _probe_input(meta, 1, 32, 32))
        torch.jit.save(scripted, str(path), _extra_files={TORCHSCRIPT_META: json.dumps(meta)})


def write_onnx(net: nn.Module, meta: dict[str, str], path: Path, opset: int) -> None:
    import onnx

    if opset < MIN_OPSET:
        raise ValueError(f"opset={opset}: sr-export writes ONNX opset >= {MIN_OPSET}")
    dummy = _probe_input(meta, 1, 32, 32)
    dynamic = ({0: "batch", 2: "height", 3: "width"},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (dummy,),
            str(path),
            dynamo=True,
            opset_version=opset,
            input_names=["lr"],
            output_names=["sr"],
            dynamic_shapes=dynamic,
            external_data=False,
            verbose=False,
        )
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = (
        f"sr-lightning {meta['method']} x{meta['scale']} generator; input 'lr' "
        f"(N, {meta['channels']}, H, W) in [0, 1]"
        + (" (bicubic-upsampled: pre-upsampling net)" if meta["upsampling"] == "pre" else "")
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def verify(net: nn.Module, path: Path, fmt: str, meta: dict[str, str]) -> float:
    """Max abs difference between the written file and the PyTorch net, at two input sizes."""
    if fmt == "onnx":
        runner = OnnxNet(path)
    elif fmt == "torchscript":
        runner, _ = load_torchscript(path)
    else:
        runner = load_generator(weights=path).net
    diffs = []
    with torch.inference_mode():
        for batch, h, w in _probe_sizes(meta):
            x = _probe_input(meta, batch, h, w)
            diffs.append(float((runner(x).float() - net(x)).abs().max()))
    return _check(fmt, diffs)


def export_module(
    module: nn.Module,
    output: str | Path,
    fmt: str,
    *,
    opset: int = 18,
    check: bool = True,
    overwrite: bool = False,
    source: str = "",
) -> Path:
    """Write ``module``'s generator to ``output`` in ``fmt``; returns the path written."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}: choose one of {', '.join(FORMATS)}")
    output = Path(output)
    net = standalone_generator(module)
    meta = export_metadata(module, net, source)
    with atomic_output(output, overwrite) as tmp:
        if fmt == "safetensors":
            write_safetensors(net, meta, tmp)
        elif fmt == "torchscript":
            write_torchscript(net, meta, tmp)
        else:
            write_onnx(net, meta, tmp, opset)
        if check:
            verify(net, tmp, fmt, meta)
    return output


# -- reading back -------------------------------------------------------------------------


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
    from sr_lightning import checkpoints  # imports Lightning: only when a checkpoint is read

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
            from sr_lightning.zoo import module_from_release

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
        upsampling=_upsampling_of(meta),
        method=str(meta.get("method", "unknown")),
    )


# -- the app ------------------------------------------------------------------------------


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: printed as one line, without a traceback."""
    errors: list[type[BaseException]] = [ValueError, OSError, ExportError]
    loaded = sys.modules.get("sr_lightning.checkpoints")
    if loaded is not None:
        errors.append(loaded.UnsafeFileError)
    return tuple(errors)


def default_output(source: Path, fmt: str) -> Path:
    return source.with_name(source.stem + FORMATS[fmt])


def run(cfg: DictConfig) -> Path:
    from sr_lightning import checkpoints

    fmt = str(cfg.format).lower()
    if fmt not in FORMATS:
        raise ValueError(f"format={cfg.format}: choose one of {', '.join(FORMATS)}")
    if cfg.get("ckpt_path"):
        source = Path(cfg.ckpt_path).expanduser()
        module = checkpoints.module_from_checkpoint(source)
    elif cfg.get("weights"):
        source = Path(cfg.weights).expanduser()
        model_cfg = cfg.get("model")
        state, meta = checkpoints.load_weights(source)
        if model_cfg is None and not isinstance(meta.get("net"), Mapping):
            from sr_lightning.zoo import module_from_release  # a released model spandrel knows

            module = module_from_release(state, f"weights {source}")[0]
        else:
            module = checkpoints.module_from_weights(
                None if isinstance(meta.get("net"), Mapping) else model_cfg, source
            )
    else:
        raise ValueError("give ckpt_path=CKPT (or weights=FILE with model=NAME) to export")
    output = Path(cfg.output).expanduser() if cfg.get("output") else default_output(source, fmt)
    if output.resolve() == source.resolve():
        raise ValueError(f"output={output} is the input file; choose another output")
    written = export_module(
        module,
        output,
        fmt,
        opset=int(cfg.opset),
        check=bool(cfg.verify),
        overwrite=bool(cfg.overwrite),
        source=source.name,
    )
    print(
        f"exported {module.method} x{module.scale} "
        f"({'luma' if module.channels == 1 else 'RGB'}) generator -> {written} "
        f"({written.stat().st_size / 1e6:.2f} MB)"
    )
    return written


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
def hydra_main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except user_errors() as err:
        print(f"sr-export: {err}", file=sys.stderr)
        raise SystemExit(1) from None


def main() -> None:
    """The ``sr-export`` console script: config errors (a key typo) are one block too."""
    run_cli("sr-export", hydra_main)


if __name__ == "__main__":
    main()
