"""sr-eval: benchmark a model on Set5 / Set14 / BSD100 / Urban100 with the papers' protocol.

Each image goes through exactly what validation does during training: the evaluation pair
(``sr_lightning.data.eval_pair``: the HR image modcropped to a multiple of the scale, in the
model's colour space — uint8 MATLAB luma, or RGB — and its unrounded MATLAB bicubic LR, or the
LR of the ``degradation`` setting); the SR image from the generator :func:`resolve_model`
rebuilds (SRGAN: its EMA); Y PSNR / SSIM of the 8-bit-rounded SR with ``scale`` border pixels
cropped (:func:`sr_lightning.core.metrics.score_images`); a set's numbers are means over its
images. So a checkpoint evaluated here reproduces the ``val/psnr`` training logged for it.

It is a plain no-grad loop rather than ``trainer.test`` so that every image's numbers (and
the bicubic baseline of the same LR image) are at hand for ``per_image.csv``, the table and
the saved images.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from sr_lightning.apps.eval_outputs import OutputsModel, check_outputs_request, score_output
from sr_lightning.apps.eval_report import (
    ImageResult,
    SetResult,
    device_name,
    format_table,
    per_image_rows,
    results_json,
    write_outputs,
)
from sr_lightning.common.color import rgb_to_ycbcr, ycbcr_to_rgb
from sr_lightning.common.pixels import quantize
from sr_lightning.core.builders import to_plain
from sr_lightning.core.config import CONFIG_PATH, register_resolvers
from sr_lightning.core.inference import Generator, Upscaler
from sr_lightning.core.metrics import score_images
from sr_lightning.core.model_file import ModelMeta
from sr_lightning.core.model_files import generator_from_config, model_request, resolve_model
from sr_lightning.core.perceptual import PerceptualScorer, build_scorer
from sr_lightning.core.zoo import describe_detected
from sr_lightning.data.datasets import (
    check_pair_size,
    header_shape,
    pair_files,
    paired_dirs,
    set_spec,
)
from sr_lightning.data.degradation import bicubic_upscale
from sr_lightning.data.degradations.model import Degradation
from sr_lightning.data.eval_pair import eval_pair
from sr_lightning.data.images import ImageLoadError, list_images, load_image
from sr_lightning.runtime.atomic import write_atomic
from sr_lightning.runtime.errors import ConfigError, exit_on_user_error
from sr_lightning.runtime.wandb_run import wandb_logger_configs

log = logging.getLogger("sr_lightning.apps.eval")

register_resolvers()

Predictor = Callable[[torch.Tensor], torch.Tensor]


# -- self-ensemble --------------------------------------------------------------------------


def dihedral_ensemble(predict: Predictor, lr: torch.Tensor) -> torch.Tensor:
    """×8 self-ensemble (EDSR's "+"): the mean of ``predict`` over the 8 flips / 90° rotations
    of the input, each output brought back by the inverse transform. Averaged before rounding."""
    total = None
    for rotations in range(4):
        for flip in (False, True):
            x = torch.rot90(lr, rotations, dims=(-2, -1))
            if flip:
                x = x.flip(-1)
            y = predict(x)
            if flip:
                y = y.flip(-1)
            y = torch.rot90(y, -rotations, dims=(-2, -1))
            total = y if total is None else total + y
    return total / 8


# -- the model --------------------------------------------------------------------------------


@dataclass
class EvalModel:
    """The generator to evaluate and where it came from."""

    generator: Generator
    source: str  # "bicubic", "checkpoint" or "weights"
    path: str | None = None

    @property
    def method(self) -> str:
        return self.generator.method

    @property
    def scale(self) -> int:
        return self.generator.scale

    @property
    def channels(self) -> int:
        return self.generator.channels

    @property
    def architecture(self) -> dict | None:
        """What spandrel detected in a released model's file."""
        return self.generator.detected

    @property
    def is_bicubic(self) -> bool:
        return self.method == "bicubic"

    @property
    def params(self) -> int:
        return self.generator.params

    def describe(self) -> str:
        """``espcn x3 luma`` — how the table and logs name the model."""
        return ModelMeta(self.method, self.scale, self.channels).describe()


def _asked(cfg: DictConfig) -> dict[str, Any]:
    """What the command line pinned: method (from model=), scale and channels (non-null)."""
    model = cfg.get("model")
    return {
        "method": model.get("method") if model else None,
        "scale": cfg.get("scale"),
        "channels": cfg.get("channels"),
    }


def _set_model_space(cfg: DictConfig, scale: int, channels: int) -> None:
    """The model's scale and channels as the run's (the reports and outputs= read them)."""
    cfg.scale = int(scale)
    cfg.channels = int(channels)


def load_eval_model(cfg: DictConfig) -> EvalModel:
    """The model of ``ckpt_path=``, ``weights=`` or ``model=``; conflicting settings are errors."""
    ckpt_path, weights = cfg.get("ckpt_path"), cfg.get("weights")
    model_cfg = cfg.get("model")
    asked = _asked(cfg)
    if ckpt_path and weights:
        raise ValueError("give either ckpt_path= or weights=, not both")
    if model_cfg is not None and model_cfg.get("method") == "bicubic" and (ckpt_path or weights):
        raise ValueError("model=bicubic has no weights: drop ckpt_path= / weights=")
    if ckpt_path or weights:
        generator = resolve_model(
            ckpt_path=ckpt_path,
            weights=weights,
            model_cfg=model_request(cfg),
            expect=asked,
        )
        _set_model_space(cfg, generator.scale, generator.channels)
        if generator.detected:
            print(
                f"sr-eval: {weights}: detected {describe_detected(generator.detected)} (spandrel)"
            )
        return EvalModel(
            generator, "checkpoint" if ckpt_path else "weights", str(ckpt_path or weights)
        )
    if model_cfg is None:
        raise ValueError(
            "no model to evaluate: pass ckpt_path=<sr-train checkpoint>, "
            "weights=<file> (with model=<method> unless it carries metadata), or model=bicubic"
        )
    if model_cfg.get("method") != "bicubic":
        raise ValueError(
            f"model={model_cfg.get('method')} needs trained weights: add weights=<file>, or use "
            "ckpt_path=<checkpoint> (method, scale and channels are read from it)"
        )
    if asked["scale"] is None:
        raise ValueError("model=bicubic needs a scale: add scale=2, 3 or 4")
    _set_model_space(cfg, asked["scale"], asked["channels"] or 1)
    plain = to_plain(cfg.model)
    generator = generator_from_config(
        plain["net"],
        None,
        scale=int(cfg.scale),
        channels=int(cfg.channels),
        method="bicubic",
        source="model=bicubic",
    )
    return EvalModel(generator, "bicubic")


def eval_device(trainer_cfg: Mapping | None) -> torch.device:
    """The device of ``trainer.accelerator`` (``auto``: the first GPU when there is one)."""
    accelerator = str((trainer_cfg or {}).get("accelerator", "auto")).lower()
    devices = (trainer_cfg or {}).get("devices")
    index = int(devices[0]) if isinstance(devices, Sequence) and not isinstance(devices, str) else 0
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError(
                f"trainer.accelerator={accelerator} but CUDA is not available; use trainer=cpu"
            )
        return torch.device("cuda", index)
    if accelerator == "mps":
        return torch.device("mps")
    return torch.device("cpu")


def make_predictor(generator: Generator, cfg: DictConfig, device: torch.device) -> Predictor:
    """LR -> SR for one image: the generator, optionally tiled and ×8 ensembled.

    ``tile`` hands the image to :class:`sr_lightning.core.inference.Upscaler`, which bounds the
    memory of very large images; it matches the untiled output when the overlap covers the
    receptive field (``tile_overlap=auto``).
    """
    tile = cfg.get("tile") or 0
    if tile != 0:
        upscaler = Upscaler(
            generator,
            device=device,
            tile=tile if tile == "auto" else int(tile),
            tile_overlap=cfg.get("tile_overlap", "auto"),
        )

        def predict(lr: torch.Tensor) -> torch.Tensor:
            return upscaler.upscale_tensor(lr).to(lr.device)

    else:
        predict = generator
    return partial(dihedral_ensemble, predict) if cfg.get("tta") else predict


# -- the images --------------------------------------------------------------------------------


@dataclass
class TestSet:
    name: str
    folder: Path
    files: list[Path]
    lr_files: list[Path] | None = None  # a paired set's given LR, one per HR file

    def image_name(self, path: Path) -> str:
        return path.relative_to(self.folder).with_suffix("").as_posix()


def paired_test_set(name: str, folders: tuple[Path, Path], scale: int, recursive: bool) -> TestSet:
    """A ``{name, hr, lr}`` entry: HR and LR files paired by stem, their sizes checked from
    the headers (an image without partner or of the wrong size is an error naming it)."""
    hr_files = list_images(folders[0], None, recursive)
    pairs = pair_files(hr_files, list_images(folders[1], None, recursive), scale)
    for hr, lr in pairs:
        check_pair_size(hr, header_shape(hr, 3)[1:], lr, header_shape(lr, 3)[1:], scale)
    return TestSet(name, folders[0], [hr for hr, _ in pairs], [lr for _, lr in pairs])


def find_test_sets(
    specs: Sequence[Any] | None,
    data_dir: str | Path,
    recursive: bool = False,
    scale: int | None = None,
) -> list[TestSet]:
    """The sets of ``data.test_sets`` that exist; a missing folder is skipped with a warning.
    Paired entries (``{name, hr, lr}``) are paired at ``scale``."""
    if not specs:
        raise ValueError(
            "data.test_sets is empty: name at least one set, e.g. data.test_sets=[Set5]"
        )
    found: list[TestSet] = []
    missing = []
    for spec in specs:
        name, folder, include = set_spec(to_plain(spec), data_dir)
        if not folder.is_dir():
            log.warning(
                "test set %s: folder %s not found, skipped (check paths.data_dir / $SR_DATA_DIR)",
                name,
                folder,
            )
            missing.append(str(folder))
            continue
        if any(s.name == name for s in found):
            raise ValueError(f"two entries of data.test_sets are named {name!r}; give one a name")
        pair = paired_dirs(to_plain(spec), data_dir)
        if pair is not None:
            found.append(paired_test_set(name, pair, int(scale or 1), recursive))
        else:
            found.append(TestSet(name, folder, list_images(folder, include, recursive)))
    if not found:
        raise FileNotFoundError(
            f"none of data.test_sets was found: {', '.join(missing)}. Put the HR images there, "
            "set $SR_DATA_DIR or paths.data_dir, or list other sets in data.test_sets."
        )
    return found


class BenchmarkImages(Dataset):
    """A set's HR images, decoded (in loader workers when there are any).

    Decoding errors come back as data, so that the main process reports them (or skips the
    image with ``data.skip_bad``) instead of a worker dying with a traceback.
    """

    def __init__(self, test_set: TestSet, scale: int) -> None:
        self.test_set = test_set
        self.scale = scale

    def __len__(self) -> int:
        return len(self.test_set.files)

    def __getitem__(self, index: int) -> dict:
        path = self.test_set.files[index]
        item: dict[str, Any] = {"name": self.test_set.image_name(path), "path": str(path)}
        try:
            item["image"] = load_image(path)
            if self.test_set.lr_files is not None:  # a paired set's given LR
                item["lr"] = load_image(self.test_set.lr_files[index])
        except ImageLoadError as err:
            return {**item, "error": err.reason}
        return item


# -- evaluation -------------------------------------------------------------------------------


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_timed(
    predict: Predictor, lr: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, float]:
    """The SR of one LR image and the seconds its forward pass took (TTA, tiles included)."""
    _synchronize(device)
    start = time.perf_counter()
    sr = predict(lr)
    _synchronize(device)
    return sr, time.perf_counter() - start


def score_image(
    sr: torch.Tensor,
    hr: torch.Tensor,
    lr: torch.Tensor,
    model: EvalModel,
    scorer: PerceptualScorer | None = None,
) -> dict[str, Any]:
    """One image's Y PSNR / SSIM (:func:`sr_lightning.core.metrics.score_images`, the protocol
    validation's ``SRMetrics`` scores with) and, with ``scorer``, LPIPS / DISTS, of the model's
    SR and of the bicubic upscale of the same LR: the scores of an :class:`ImageResult`."""
    scale = model.scale
    ((psnr, ssim),) = score_images(sr, hr, scale).rows()
    perceptual = (
        {k: v.item() for k, v in scorer(sr, hr, scale).items()} if scorer is not None else {}
    )
    if model.is_bicubic:  # the model is the baseline
        bic_psnr, bic_ssim, bic_perceptual = psnr, ssim, perceptual
    else:
        bicubic = bicubic_upscale(lr, scale)
        ((bic_psnr, bic_ssim),) = score_images(bicubic, hr, scale).rows()
        bic_perceptual = (
            {k: v.item() for k, v in scorer(bicubic, hr, scale).items()}
            if scorer is not None
            else {}
        )
    return {
        "psnr_y": psnr,
        "ssim_y": ssim,
        "bicubic_psnr_y": bic_psnr,
        "bicubic_ssim_y": bic_ssim,
        "perceptual": perceptual,
        "bicubic_perceptual": bic_perceptual,
    }


def evaluate_set(
    test_set: TestSet,
    model: EvalModel,
    predict: Predictor,
    device: torch.device,
    num_workers: int = 0,
    skip_bad: bool = False,
    image_dir: Path | None = None,
    scorer: PerceptualScorer | None = None,
    degradation: Degradation | None = None,
) -> SetResult:
    """Per-image Y PSNR / SSIM (and with ``scorer`` LPIPS / DISTS) of the model and of
    bicubic, and the model's forward time; the LR from ``degradation`` (default bicubic)."""
    scale, result = model.scale, SetResult(test_set.name, hr_dir=str(test_set.folder.resolve()))
    loader = DataLoader(BenchmarkImages(test_set, scale), batch_size=None, num_workers=num_workers)
    for item in loader:
        if "error" in item:
            if not skip_bad:
                raise ImageLoadError(item["error"])  # with the advice to skip it
            log.warning("skipping %s", item["error"])
            continue
        raw = item["image"].to(device)
        where = f"{test_set.name}/{item['name']}"
        if min(d - d % scale for d in raw.shape[-2:]) <= 2 * scale:  # modcropped vs. border
            raise ValueError(f"{where} ({item['path']}) is too small to evaluate at x{scale}")
        given = item["lr"].to(device).unsqueeze(0) if "lr" in item else None
        hr, lr = eval_pair(
            raw.unsqueeze(0), scale, model.channels, degradation, [item["name"]], given
        )
        sr, seconds = forward_timed(predict, lr, device)
        if sr.shape != hr.shape:
            raise RuntimeError(
                f"{where}: the model returned {tuple(sr.shape)} for HR {tuple(hr.shape)}; is "
                f"the model really x{scale}?"
            )
        try:
            scores = score_image(sr, hr, lr, model, scorer)
        except ValueError as err:
            raise ValueError(f"{where} ({item['path']}): {err}") from err
        result.images.append(ImageResult(test_set.name, item["name"], seconds=seconds, **scores))
        if image_dir is not None:
            image = sr_image(sr, raw, model.channels, scale, given, degradation, item["name"])
            save_png(image, image_dir / f"{item['name']}.png")
    if not result.images:
        raise ValueError(f"test set {test_set.name}: no readable image in {test_set.folder}")
    return result


# -- images out ---------------------------------------------------------------------------


def sr_image(
    sr: torch.Tensor,
    raw: torch.Tensor,
    channels: int,
    scale: int,
    given_lr: torch.Tensor | None = None,
    degradation: Degradation | None = None,
    name: str = "",
) -> torch.Tensor:
    """The SR result as a uint8 image (C, H, W) to save.

    RGB models and grey inputs: the SR itself. Luma models on colour inputs: the papers' way,
    Y from the model and CbCr from the bicubic upscale of the RGB LR the model's Y came from:
    :func:`eval_pair`'s, of the same ``degradation`` and image ``name`` (the seed of random
    ones), or a paired set's ``given_lr``; back to RGB with MATLAB ``ycbcr2rgb``.
    """
    # rounded in float64, as the metrics round it (float32 can tip a level at .5)
    out = quantize(sr[0].double()).float()
    if channels == 1 and raw.shape[0] == 3:
        image = raw.to(sr.device).unsqueeze(0)
        _, lr_rgb = eval_pair(image, scale, 3, degradation, [name], given_lr)
        chroma = rgb_to_ycbcr(bicubic_upscale(lr_rgb, scale))[0, 1:]
        out = quantize(ycbcr_to_rgb(torch.cat([out, chroma])))
    return (out * 255.0).round().to(torch.uint8).cpu()


def save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    array = image.permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())


# -- the app -------------------------------------------------------------------------------------


def keep_earlier_results(output_dir: Path, overwrite: bool) -> None:
    """An earlier evaluation's results.json is kept unless ``overwrite=true`` (as sr-upscale)."""
    earlier = output_dir / "results.json"
    if earlier.exists() and not overwrite:
        raise ConfigError(
            f"{earlier} already exists (an earlier evaluation in this run dir); pass "
            "overwrite=true to replace it, or use another hydra.run.dir"
        )


def evaluate_outputs(cfg: DictConfig) -> dict[str, dict[str, float | int]]:
    """``outputs=DIR``: score the SR images ``DIR/<set>/<name>.png`` (no model), with the
    reports of :func:`evaluate` (:mod:`sr_lightning.apps.eval_outputs`)."""
    output_dir = Path(cfg.paths.output_dir)
    scale = check_outputs_request(cfg)
    folder = Path(str(cfg.outputs)).expanduser()
    device = eval_device(cfg.get("trainer"))
    data = cfg.data
    test_sets = find_test_sets(
        data.get("test_sets"), data.data_dir, bool(data.get("recursive")), scale
    )
    degradation = Degradation.from_config(to_plain(cfg.get("degradation")))
    model = OutputsModel(str(folder), scale)
    results = []
    for test_set in test_sets:
        result = SetResult(test_set.name, hr_dir=str(test_set.folder.resolve()))
        for item in BenchmarkImages(test_set, scale):
            if "error" in item:
                raise ImageLoadError(item["error"])
            result.images.append(
                score_output(item, test_set.name, folder, scale, device, degradation)
            )
        results.append(result)
    write_outputs(output_dir, model, results, device, False, None, degradation.name)
    log.info("results\n%s", format_table(model, results, False))
    log.info("outputs in %s", output_dir)
    return results_json(results)


def evaluate(cfg: DictConfig) -> dict[str, dict[str, float | int]]:
    """Evaluate the configured model on ``data.test_sets``; writes the run dir's outputs.
    ``outputs=DIR`` scores precomputed SR images instead (:func:`evaluate_outputs`)."""
    output_dir = Path(cfg.paths.output_dir)
    keep_earlier_results(output_dir, bool(cfg.get("overwrite")))
    if cfg.get("outputs"):
        return evaluate_outputs(cfg)
    model = load_eval_model(cfg)
    device = eval_device(cfg.get("trainer"))
    if isinstance(model.generator.net, torch.nn.Module):
        model.generator.net.to(device).eval()
    predict = make_predictor(model.generator, cfg, device)
    # built before the first image, so that missing backbone weights fail at start-up
    scorer = build_scorer(to_plain(cfg.get("perceptual")), "perceptual", model.method)
    if scorer is not None:
        scorer.to(device)
    data = cfg.data
    test_sets = find_test_sets(
        data.get("test_sets"), data.data_dir, bool(data.get("recursive")), model.scale
    )
    log.info(
        "evaluating %s (%s params) on %s, x%d, %s",
        model.describe(),
        f"{model.params:,}",
        ", ".join(s.name for s in test_sets),
        model.scale,
        device_name(device),
    )
    results = []
    with torch.inference_mode():
        for test_set in test_sets:
            image_dir = output_dir / "images" / test_set.name if cfg.get("save_images") else None
            results.append(
                evaluate_set(
                    test_set,
                    model,
                    predict,
                    device,
                    num_workers=int(data.get("num_workers") or 0),
                    skip_bad=bool(data.get("skip_bad")),
                    image_dir=image_dir,
                    scorer=scorer,
                    degradation=Degradation.from_config(to_plain(cfg.get("degradation"))),
                )
            )
    lpips_net = scorer.lpips_net if scorer is not None else None
    lr_setting = Degradation.from_config(to_plain(cfg.get("degradation"))).name
    tta = bool(cfg.get("tta"))
    write_outputs(output_dir, model, results, device, tta, lpips_net, lr_setting)
    if wandb_logger_configs(cfg):
        from sr_lightning.apps.eval_wandb import log_eval_results

        log_eval_results(cfg, model, results_json(results), *per_image_rows(results))
    log.info("results\n%s", format_table(model, results, bool(cfg.get("tta"))))
    log.info("outputs in %s", output_dir)
    return results_json(results)


def eval_settings(cfg: DictConfig) -> dict[str, Any]:
    """The settings that matter to an evaluation (the data group also holds training keys)."""
    model = cfg.get("model")
    data = cfg.data
    return {
        "ckpt_path": cfg.get("ckpt_path"),
        "weights": cfg.get("weights"),
        "model": model.get("method") if model is not None else None,
        "scale": cfg.get("scale"),
        "channels": cfg.get("channels"),
        "tta": cfg.get("tta"),
        "save_images": cfg.get("save_images"),
        "tile": cfg.get("tile"),
        "outputs": cfg.get("outputs"),
        "degradation": to_plain(cfg.get("degradation")),
        "perceptual": to_plain(cfg.get("perceptual")),
        "data_dir": data.get("data_dir"),
        "test_sets": to_plain(data.get("test_sets")),
        "accelerator": (cfg.get("trainer") or {}).get("accelerator"),
        "output_dir": cfg.paths.output_dir,
    }


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def hydra_main(cfg: DictConfig) -> float:
    """Returns the first set's PSNR, so that sweeps over checkpoints can rank them."""
    if (cfg.get("extras") or {}).get("print_config"):
        print("\n".join(f"{k}: {v}" for k, v in eval_settings(cfg).items()))
    with exit_on_user_error("sr-eval"):
        results = evaluate(cfg)
    return next(iter(results.values()))["psnr_y"]


def main() -> float:
    """``python -m sr_lightning.apps.eval``: the config is checked first (apps/cli.py)."""
    from sr_lightning.apps.cli import evaluate

    return evaluate()


if __name__ == "__main__":
    main()
