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

import copy
import json
import logging
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from sr_lightning.core.config import CONFIG_PATH, register_resolvers
from sr_lightning.core.inference import Generator
from sr_lightning.core.model_file import METADATA_FORMAT
from sr_lightning.core.model_files import (
    TORCHSCRIPT_META,
    OnnxNet,
    load_torchscript,
    model_request,
    resolve_model,
)
from sr_lightning.runtime.atomic import atomic_output
from sr_lightning.runtime.errors import EXIT_USER_ERROR, file_errors

log = logging.getLogger("sr_lightning.apps.export")

register_resolvers()

FORMATS = {"onnx": ".onnx", "safetensors": ".safetensors", "torchscript": ".torchscript"}
MIN_OPSET = 17
# fp32 exports agree with eager PyTorch to ~1e-6; this only catches broken graphs.
VERIFY_ATOL = 1e-4


class ExportError(RuntimeError):
    """An export that failed its check against the PyTorch net."""


# -- metadata -----------------------------------------------------------------------------


def export_metadata(generator: Generator, source: str = "") -> dict[str, str]:
    """String metadata shared by every format (safetensors and ONNX only hold strings)."""
    if not generator.spec or "_target_" not in generator.spec:
        raise ValueError(
            f"the {generator.method} generator has no net description (registered class name "
            "and keyword values); cannot record how to rebuild it"
        )
    meta = {
        "format": METADATA_FORMAT,
        "method": str(generator.method),
        "scale": str(int(generator.scale)),
        "channels": str(int(generator.channels)),
        "upsampling": generator.upsampling,
        "net": json.dumps(generator.spec, sort_keys=True),
        "source": source,
    }
    if generator.display:
        meta["display"] = json.dumps(dict(generator.display), sort_keys=True)
    return meta


# -- writing ------------------------------------------------------------------------------


def standalone_generator(generator: Generator) -> nn.Module:
    """A CPU float32 eval-mode copy of the generator's net (unwrapped from torch.compile)."""
    net = generator.net
    if not isinstance(net, nn.Module):
        raise ValueError(
            "only a PyTorch generator can be exported (not an ONNX / TorchScript file)"
        )
    net = copy.deepcopy(getattr(net, "_orig_mod", net))
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
        runner = resolve_model(weights=path).net
    diffs = []
    with torch.inference_mode():
        for batch, h, w in _probe_sizes(meta):
            x = _probe_input(meta, batch, h, w)
            diffs.append(float((runner(x).float() - net(x)).abs().max()))
    return _check(fmt, diffs)


def export_generator(
    generator: Generator,
    output: str | Path,
    fmt: str,
    *,
    opset: int = 18,
    check: bool = True,
    overwrite: bool = False,
    source: str = "",
) -> Path:
    """Write the generator to ``output`` in ``fmt``; returns the path written."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}: choose one of {', '.join(FORMATS)}")
    output = Path(output)
    net = standalone_generator(generator)
    meta = export_metadata(generator, source)
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


# -- the app ------------------------------------------------------------------------------


def default_output(source: Path, fmt: str) -> Path:
    return source.with_name(source.stem + FORMATS[fmt])


def run(cfg: DictConfig) -> Path:
    fmt = str(cfg.format).lower()
    if fmt not in FORMATS:
        raise ValueError(f"format={cfg.format}: choose one of {', '.join(FORMATS)}")
    if not (cfg.get("ckpt_path") or cfg.get("weights")):
        raise ValueError("give ckpt_path=CKPT (or weights=FILE with model=NAME) to export")
    source = Path(cfg.get("ckpt_path") or cfg.get("weights")).expanduser()
    generator = resolve_model(
        ckpt_path=cfg.get("ckpt_path"),
        weights=cfg.get("weights"),
        model_cfg=model_request(cfg),
    )
    output = Path(cfg.output).expanduser() if cfg.get("output") else default_output(source, fmt)
    if output.resolve() == source.resolve():
        raise ValueError(f"output={output} is the input file; choose another output")
    written = export_generator(
        generator,
        output,
        fmt,
        opset=int(cfg.opset),
        check=bool(cfg.verify),
        overwrite=bool(cfg.overwrite),
        source=source.name,
    )
    print(
        f"exported {generator.method} x{generator.scale} "
        f"({'luma' if generator.channels == 1 else 'RGB'}) generator -> {written} "
        f"({written.stat().st_size / 1e6:.2f} MB)"
    )
    return written


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
def hydra_main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except ExportError as err:  # the written file failed its check: not the user's to fix
        print(f"sr-export: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except file_errors() as err:
        print(f"sr-export: {err}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None


def main() -> None:
    """``python -m sr_lightning.apps.export``: the config is checked first (apps/cli.py)."""
    from sr_lightning.apps.cli import export

    export()


if __name__ == "__main__":
    main()
