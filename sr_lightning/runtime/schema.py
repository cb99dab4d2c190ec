"""The typed schema of every app's composed config, checked once at start-up.

Each app (``sr-train``, ``sr-eval``, ``sr-upscale``, ``sr-export``) validates its composed
config against one pydantic model here before it imports anything heavy (Lightning,
torchmetrics, W&B, ONNX), so a bad value or a key typo is one error block in well under a
second. Every documented key carries its type, its range and a one-line description; the
config references of docs/training.md, evaluation.md and inference.md are generated from
them (``python -m sr_lightning.runtime.schema --write``).

Sections are strict (an unknown key is an error, with ``did you mean …?``), except the ones
that name a class of the user's choice through ``_target_``: ``model.net``,
``model.optimizer``, ``model.scheduler``, ``loss`` with a ``_target_``, each callback and each
logger. Their documented keys are checked; other keys go to the class as they are.

This module imports only pydantic and omegaconf (and the error types of
:mod:`sr_lightning.runtime.errors`).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from omegaconf import DictConfig, ListConfig, OmegaConf
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from sr_lightning.core.derived import MOVED, hr_patch, moved_message
from sr_lightning.runtime.errors import ConfigError, closest

# at most this many problems are listed; the block stays within 25 lines
MAX_PROBLEMS = 8


def key(description: str, default: Any = None, **constraints: Any) -> Any:
    """A documented config key: its one-line description, default and range."""
    return Field(default, description=description, **constraints)


class Strict(BaseModel):
    """A section whose keys are all known: any other key is an error."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class Open(BaseModel):
    """A ``_target_`` section: the documented keys are checked, other keys go to the class."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    target: str = Field(..., alias="_target_", description="the class to build (import path)")


PosInt = Annotated[int, Ge(1)]
NonNegInt = Annotated[int, Ge(0)]
Channels = Literal[1, 3]
Fraction = Annotated[float, Ge(0.0), Le(1.0)]
# Lightning's limit_*_batches / overfit_batches: a count, or a fraction of the epoch
Batches = Union[NonNegInt, Fraction]  # noqa: UP007 (a union of annotated types)


# -- data ------------------------------------------------------------------------------------


class SetSpec(Strict):
    name: str = key("the set's name in metrics and logs")
    dir: str = key("its folder (a path, or a name under paths.data_dir)")
    include: list[str] | None = key("only these file names (null: every image in dir)")


class PairedSetSpec(Strict):
    name: str | None = key("the set's name in metrics and logs (default: the HR folder's)")
    hr: str = key("its HR folder (a path, or a name under paths.data_dir)", ...)
    lr: str = key(
        "its LR folder, paired by file stem (0801.png <-> 0801x4.png), used as given", ...
    )


def _set_tag(value: Any) -> str:
    if not isinstance(value, dict):
        return "set_name"
    return "paired_set" if {"hr", "lr"} & set(value) else "folder_set"


SetEntry = Annotated[
    Union[  # noqa: UP007
        Annotated[str, Tag("set_name")],
        Annotated[SetSpec, Tag("folder_set")],
        Annotated[PairedSetSpec, Tag("paired_set")],
    ],
    Discriminator(_set_tag),
]


class Augment(Strict):
    hflip: bool = key("random horizontal flips")
    vflip: bool = key("random vertical flips")
    rot90: bool = key("random 90-degree rotations")


class DataConfig(Strict):
    target: str | None = Field(None, alias="_target_", description="the LightningDataModule")
    name: str | None = key("the data set's name (run names, W&B tags)")
    data_dir: str | None = key("where set names are looked up (paths.data_dir)")
    train_sets: list[SetEntry] | None = key("folders of HR training images (required to train)")
    val_sets: list[SetEntry] | None = key("validation sets; the first one gives val/psnr")
    test_sets: list[SetEntry] | None = key("test sets (test=true, sr-eval)")
    scales: list[PosInt] | None = key("multi-scale training: one scale drawn per batch (VDSR)")
    batch_size: PosInt = key("training patches per batch (per device)", 16)
    patches_per_image: PosInt = key("random crops per training image and epoch", 1)
    val_holdout: NonNegInt = key("training images held out as a validation set", 0)
    augment: Augment | None = key("flips and rotations of the training crops")
    num_workers: NonNegInt = key("DataLoader worker processes", 0)
    pin_memory: bool = key("page-locked host batches (faster GPU copies)", True)
    persistent_workers: bool = key("keep workers alive between epochs", True)
    cache: Literal["auto", "ram", "disk", "none"] = key("where decoded images live", "auto")
    cache_dir: str | None = key("disk caches (cache=disk)")
    device_cache: Literal["auto", "true", "false"] | bool = key(
        "keep the training images on the accelerator and crop there", "auto"
    )
    degradation: Literal["auto", "paired", "online"] = key(
        "training LR computed once per image (paired) or per batch (online)", "auto"
    )
    skip_bad: bool = key("skip undecodable images with a warning", False)
    small_images: Literal["skip", "error"] = key("training images smaller than a patch", "skip")
    recursive: bool = key("look for images in sub-folders", False)
    random_crops: bool = key("random crop positions (false: fixed, for debug=overfit)", True)


# -- degradation -----------------------------------------------------------------------------

Range = Annotated[list[float], MinLen(2), MaxLen(2)]
KernelKind = Literal[
    "iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"
]
Probs = list[Annotated[float, Ge(0.0)]]


class RealESRGANOptions(Strict):
    """Real-ESRGAN's second-order degradation; a key left out keeps the released preset."""

    kernel_range: Annotated[list[PosInt], MinLen(2), MaxLen(2)] | None = key(
        "[min, max] side of the blur kernels (odd sides drawn)"
    )
    kernel_list: list[KernelKind] | None = key("first pass: the blur kernels drawn from")
    kernel_prob: Probs | None = key("first pass: their probabilities")
    sinc_prob: Fraction | None = key("first pass: probability of a sinc kernel instead")
    blur_sigma: Range | None = key("first pass: [min, max] Gaussian sigma")
    betag_range: Range | None = key("first pass: generalized Gaussian beta range")
    betap_range: Range | None = key("first pass: plateau beta range")
    resize_prob: Probs | None = key("first pass: probabilities of up, down, keep")
    resize_range: Range | None = key("first pass: [min, max] resize factor")
    gaussian_noise_prob: Fraction | None = key("first pass: Gaussian (else Poisson) noise")
    noise_range: Range | None = key("first pass: Gaussian noise sigma on [0, 255]")
    poisson_scale_range: Range | None = key("first pass: Poisson noise scale")
    gray_noise_prob: Fraction | None = key("first pass: grey (same in every channel) noise")
    jpeg_range: Range | None = key("first pass: JPEG quality range")
    second_blur_prob: Fraction | None = key("second pass: probability of a blur")
    kernel_list2: list[KernelKind] | None = key("second pass: the blur kernels drawn from")
    kernel_prob2: Probs | None = key("second pass: their probabilities")
    sinc_prob2: Fraction | None = key("second pass: probability of a sinc kernel instead")
    blur_sigma2: Range | None = key("second pass: [min, max] Gaussian sigma")
    betag_range2: Range | None = key("second pass: generalized Gaussian beta range")
    betap_range2: Range | None = key("second pass: plateau beta range")
    resize_prob2: Probs | None = key("second pass: probabilities of up, down, keep")
    resize_range2: Range | None = key("second pass: [min, max] resize factor")
    gaussian_noise_prob2: Fraction | None = key("second pass: Gaussian (else Poisson) noise")
    noise_range2: Range | None = key("second pass: Gaussian noise sigma on [0, 255]")
    poisson_scale_range2: Range | None = key("second pass: Poisson noise scale")
    gray_noise_prob2: Fraction | None = key("second pass: grey (same in every channel) noise")
    jpeg_range2: Range | None = key("second pass: JPEG quality range")
    final_sinc_prob: Fraction | None = key("last: probability of the final sinc filter")


class DegradationConfig(Strict):
    name: Literal["bicubic", "bd", "dn", "realesrgan"] = key(
        "the LR model: bicubic (BI), bd (blur), dn (noise), realesrgan (real-world)", "bicubic"
    )
    sigma: Annotated[float, Ge(0.0)] | None = key(
        "bd: the blur's sigma (1.6); dn: the noise's on [0, 255] (30); null: the default"
    )
    eval_seed: int = key("fixes the evaluation LR of random degradations (dn, realesrgan)", 0)
    options: RealESRGANOptions | None = key("realesrgan: overrides of the released options")

    @model_validator(mode="after")
    def _options_are_realesrgans(self) -> DegradationConfig:
        if (
            self.options
            and self.options.model_dump(exclude_none=True)
            and self.name != "realesrgan"
        ):
            raise ValueError(
                f"degradation.options are Real-ESRGAN's; degradation.name={self.name} takes "
                "none (drop them, or use degradation=realesrgan)."
            )
        return self


# -- loss ------------------------------------------------------------------------------------


class PixelTerm(Strict):
    kind: Literal["mse", "l1", "charbonnier"] = key("the pixel loss", "mse")
    weight: Annotated[float, Ge(0.0)] = key("its weight in the total loss", 1.0)


class ContentTerm(Strict):
    weight: Annotated[float, Ge(0.0)] = key("weight of the VGG19 content loss", 1.0)
    layer: str = key("VGG19 feature layer, e.g. relu5_4 (VGG54), relu2_2, conv5_4", "relu5_4")
    criterion: Literal["mse", "l1"] = key("distance between feature maps", "mse")
    rescale: Annotated[float, Gt(0.0)] = key("factor on the feature maps (SRGAN: 1/12.75)", 1.0)
    pretrained: bool = key("torchvision's ImageNet VGG19 (false: random, for tests)", True)
    weights_path: str | None = key("a local vgg19-dcbb9e9d.pth")


class AdversarialTerm(Strict):
    kind: Literal["vanilla", "lsgan", "hinge"] = key("the GAN loss", "vanilla")
    weight: Annotated[float, Ge(0.0)] = key("weight of the generator's adversarial term", 1e-3)
    real_label: Annotated[float, Gt(0.0), Le(1.0)] = key("target of real images (<1: smoothing)", 1)


class BuiltinLoss(Strict):
    pixel: PixelTerm | None = key("pixel term (loss=mse, l1)")
    content: ContentTerm | None = key("VGG19 content term (loss=perceptual, gan)")
    adversarial: AdversarialTerm | None = key("adversarial term (loss=gan, SRGAN only)")


class CustomLoss(Open):
    """``loss._target_``: your nn.Module, called as ``loss(sr, hr)`` -> a scalar."""


def _has_target(value: Any) -> str:
    if isinstance(value, dict):
        return "custom_loss" if "_target_" in value else "builtin_loss"
    return "custom_loss" if isinstance(value, CustomLoss) else "builtin_loss"


LossConfig = Annotated[
    Union[Annotated[BuiltinLoss, Tag("builtin_loss")], Annotated[CustomLoss, Tag("custom_loss")]],  # noqa: UP007
    Discriminator(_has_target),
]


# -- model -----------------------------------------------------------------------------------


class NetConfig(Open):
    """A net: its class gets the run's scale and channels (the arguments it names so)."""


class OptimizerConfig(Open):
    partial: bool = Field(True, alias="_partial_", description="built later with the params")
    lr: Annotated[float, Gt(0.0)] | None = key("learning rate (> 0)")
    weight_decay: Annotated[float, Ge(0.0)] | None = key("L2 penalty")
    momentum: Annotated[float, Ge(0.0), Le(1.0)] | None = key("SGD momentum")
    betas: Annotated[list[Annotated[float, Ge(0.0), Lt(1.0)]], MinLen(2), MaxLen(2)] | None = key(
        "Adam's (beta1, beta2)"
    )
    eps: Annotated[float, Gt(0.0)] | None = key("Adam's epsilon")


class SchedulerConfig(Open):
    partial: bool = Field(True, alias="_partial_", description="built later with the optimizer")
    gamma: Annotated[float, Gt(0.0)] | None = key("lr factor at each milestone")


class BudgetLRConfig(SchedulerConfig):
    """``sr_lightning.core.schedules.BudgetLR``: the lr as a function of the budget done."""

    kind: Literal["step", "cosine"] = key("step: x gamma at each milestone; cosine: to final")
    milestones: list[Annotated[float, Gt(0.0), Lt(1.0)]] | None = key(
        "fractions of the budget in (0, 1)"
    )
    final: Annotated[float, Ge(0.0)] = key("the cosine's end, x the base lr", 0.0)
    warmup: Annotated[float, Ge(0.0), Lt(1.0)] = key("linear warm-up, a fraction of the budget", 0)


BUDGET_LR = "sr_lightning.core.schedules.BudgetLR"

Scheduler = Annotated[
    Union[Annotated[BudgetLRConfig, Tag("budget")], Annotated[SchedulerConfig, Tag("other")]],  # noqa: UP007
    Discriminator(lambda v: "budget" if _target_of(v) == BUDGET_LR else "other"),
]


class Display(Strict):
    name: str = key("the method's name in sr-report")
    colour: str = key("its colour, e.g. '#1f77b4'")


class ModelConfig(Strict):
    """The keys every sr_lightning module takes (``sr_lightning.modules.base.SRModule``)."""

    target: str = Field(..., alias="_target_", description="the LightningModule (import path)")
    method: str | None = key("the method's name (runs, checkpoints, reports, exports)")
    display: Display | None = key("how sr-report names and colours it")
    patch_lr: PosInt | None = key("training patch side in LR pixels (HR: x scale)")
    patch_hr: PosInt | None = key(
        "or in HR pixels, rounded up to a multiple of every training scale"
    )
    net: NetConfig = key("the net: _target_ and its arguments")
    optimizer: OptimizerConfig | None = key("the optimizer: _target_, lr, ...")
    scheduler: Scheduler | None = key("the lr schedule: _target_ and its arguments")
    scheduler_interval: Literal["step", "epoch"] = key("when the schedule steps", "epoch")
    scheduler_monitor: str | None = key("the metric a plateau schedule watches")
    last_layer_lr_mult: Annotated[float, Ge(0.0)] = key("lr factor of the last layer", 1.0)
    loss_reduction: Literal["mean", "sum", "half_sum"] = key(
        "per-pixel mean, or per-patch (half) sum (SRCNN, VDSR)", "mean"
    )
    init_from: str | None = key("start the net from this checkpoint or released model")
    channels_last: bool = key("channels-last memory format (GPU)", False)
    compile: bool = key("torch.compile the net", False)


class SRCNNModel(ModelConfig):
    valid_loss: bool = key("loss on the padding-free centre only (the paper's)", True)


class VDSRModel(ModelConfig):
    train_crop: PosInt | None = key("central crop of the interpolated patch (the paper's 41)")
    clip_theta: Annotated[float, Gt(0.0)] | None = key("gradients clipped to theta / lr")


class GradClip(Strict):
    generator: Annotated[float, Gt(0.0)] | None = key("clip value of G's gradients (null: off)")
    discriminator: Annotated[float, Gt(0.0)] | None = key("clip value of D's gradients")
    algorithm: Literal["norm", "value"] = key("clip the norm or each value", "norm")


class SRGANModel(ModelConfig):
    discriminator: NetConfig = key("the discriminator: _target_ and its arguments")
    d_optimizer: OptimizerConfig = key("the discriminator's optimizer")
    d_scheduler: Scheduler | None = key("the discriminator's lr schedule")
    d_steps_per_g: PosInt = key("G steps on one batch in d_steps_per_g", 1)
    d_warmup_steps: NonNegInt = key("D-only batches before G starts", 0)
    grad_clip: GradClip | None = key("gradient clipping per network")
    ema_decay: Annotated[float, Ge(0.0), Lt(1.0)] | None = key(
        "EMA of the generator for validation and export (null: off)", 0.999
    )
    loss_reduction: Literal["mean"] = key(
        "mean only: loss.*.weight weigh SRGAN's mean pixel, content and adversarial terms", "mean"
    )


class CustomModel(ModelConfig):
    """A module of your own: the base keys are checked, its own keys go to it."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)


MODULES = "sr_lightning.modules."
MODEL_CLASSES = {
    f"{MODULES}srcnn.SRCNNModule": "srcnn",
    f"{MODULES}vdsr.VDSRModule": "vdsr",
    f"{MODULES}srgan.SRGANModule": "srgan",
}


def _target_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("_target_")
    return getattr(value, "target", None)


def _model_tag(value: Any) -> str:
    target = str(_target_of(value) or "")
    if target in MODEL_CLASSES:
        return MODEL_CLASSES[target]
    return "base" if target.startswith(MODULES) else "custom"


Model = Annotated[
    Union[  # noqa: UP007
        Annotated[SRCNNModel, Tag("srcnn")],
        Annotated[VDSRModel, Tag("vdsr")],
        Annotated[SRGANModel, Tag("srgan")],
        Annotated[ModelConfig, Tag("base")],
        Annotated[CustomModel, Tag("custom")],
    ],
    Discriminator(_model_tag),
]


# -- trainer, callbacks, loggers, paths ------------------------------------------------------


class TrainerConfig(Strict):
    """``lightning.pytorch.Trainer``'s arguments: the documented ones typed, every other
    argument of the Trainer accepted as it is (``+trainer.profiler=simple``)."""

    target: str = Field(
        "lightning.pytorch.trainer.Trainer", alias="_target_", description="the Trainer class"
    )
    default_root_dir: str | None = key("Lightning's root folder (the run dir)")
    accelerator: str = key("cpu | gpu | cuda | mps | auto", "auto")
    strategy: str = key("auto | ddp | ddp_spawn | ...", "auto")
    devices: PosInt | Literal[-1, "auto"] | str | list[NonNegInt] = key("devices per node", 1)
    num_nodes: PosInt = key("nodes (DDP)", 1)
    precision: Literal[
        "auto", "32-true", "32", 32, "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", 64
    ] = key(
        "numeric precision (auto: bf16-mixed on a CPU with AVX512-BF16 / AMX or a bfloat16 GPU, "
        "else 32-true)",
        "32-true",
    )
    min_epochs: NonNegInt | None = key("train at least this many epochs")
    max_epochs: Annotated[int, Ge(-1)] | None = key("stop after this many epochs (-1: no limit)")
    min_steps: Annotated[int, Ge(-1)] | None = key("train at least this many steps")
    max_steps: Annotated[int, Ge(-1)] = key("stop after this many steps (-1: no limit)", -1)
    max_time: str | dict[str, NonNegInt] | None = key(
        "stop after this wall time, DD:HH:MM:SS or {days, hours, minutes, seconds}"
    )
    limit_train_batches: Batches | None = key("batches per epoch: a count or a fraction")
    limit_val_batches: Batches | None = key("validation batches: a count or a fraction")
    limit_test_batches: Batches | None = key("test batches: a count or a fraction")
    limit_predict_batches: Batches | None = key("predict batches: a count or a fraction")
    overfit_batches: Batches = key("train and validate on this many batches (0: off)", 0)
    val_check_interval: Annotated[float, Gt(0.0)] | None = key(
        "validate every N steps (int) or fraction of an epoch (float)"
    )
    check_val_every_n_epoch: PosInt | None = key("validate every N epochs", 1)
    num_sanity_val_steps: Annotated[int, Ge(-1)] = key("validation batches before training", 0)
    log_every_n_steps: PosInt = key("logging interval in steps", 10)
    accumulate_grad_batches: PosInt = key("batches per optimizer step", 1)
    gradient_clip_val: Annotated[float, Ge(0.0)] | None = key("gradient clipping value")
    gradient_clip_algorithm: Literal["norm", "value"] | None = key("clip the norm or each value")
    enable_checkpointing: bool | None = key("Lightning's checkpointing")
    enable_progress_bar: bool = key("a progress bar (a line per epoch when redirected)", True)
    enable_model_summary: bool = key("the one-line model summary", True)
    deterministic: bool | Literal["warn"] | None = key("deterministic kernels", False)
    benchmark: bool | None = key("cuDNN autotuning", False)
    sync_batchnorm: bool = key("BatchNorm statistics over all devices (DDP)", False)
    fast_dev_run: bool | NonNegInt = key("run N batches of train and val, then stop", False)
    detect_anomaly: bool = key("torch's autograd anomaly detection", False)
    inference_mode: bool = key("torch.inference_mode for evaluation", True)
    use_distributed_sampler: bool = key("Lightning's DistributedSampler", True)
    reload_dataloaders_every_n_epochs: NonNegInt = key("rebuild the loaders every N epochs", 0)
    barebones: bool = key("Lightning's barebones mode", False)
    enable_autolog_hparams: bool = key("log hyperparameters automatically", True)
    profiler: Any = key("simple | advanced | pytorch | a profiler config")
    plugins: Any = key("Lightning plugins (the atomic checkpoint writer)")
    logger: Any = key("set by sr-train from the logger group")
    callbacks: Any = key("set by sr-train from the callbacks group")
    model_registry: Any = key("Lightning's model registry")


class CallbackConfig(Open):
    """A callback: its ``_target_`` and arguments."""


class LoggerConfig(Open):
    """A Lightning logger: its ``_target_`` and arguments."""


class PathsConfig(Strict):
    root_dir: str | None = key("where the command runs")
    data_dir: str | None = key("data root: $SR_DATA_DIR, else ./data")
    log_dir: str | None = key("where run dirs go (logs/)")
    output_dir: str | None = key("this run's directory (made by Hydra)")
    cache_dir: str | None = key("decoded-image caches and downloaded weights")


class ExtrasConfig(Strict):
    print_config: bool = key("print the resolved config once it passed the checks", False)


class PerceptualMetric(Strict):
    enabled: bool | Literal["auto"] = key("compute it (auto: for SRGAN when weights are on disk)")
    net: Literal["alex", "vgg"] = key("LPIPS backbone", "alex")
    weights_path: str | None = key("a local backbone file")


class PerceptualEval(Strict):
    lpips: PerceptualMetric | None = key("LPIPS (lower is better)")
    dists: PerceptualMetric | None = key("DISTS (lower is better)")


# -- the apps --------------------------------------------------------------------------------


class Common(Strict):
    scale: PosInt | None = key("upscaling factor (2, 3, 4, ...)")
    channels: Channels | None = key("1 = luma (MATLAB Y of YCbCr), 3 = RGB")
    ckpt_path: str | None = key("an sr-train checkpoint")
    callbacks: dict[str, CallbackConfig | None] | None = key("callbacks by name (null: drop)")
    model: Model | None = key("the model group: module, net, optimizer, schedule")


TileSize = NonNegInt | Literal["auto"]


class TrainConfig(Common):
    scale: PosInt = key("upscaling factor, read by data and model (2, 3, 4, ...)", 3)
    channels: Channels = key("1 = luma (MATLAB Y of YCbCr), 3 = RGB", 1)
    task_name: str = key("names the log folder (logs/<task_name>/)", "train")
    run_name: str | None = key("the run's name and W&B group")
    tags: list[str] | None = key("W&B tags")
    seed: Annotated[int, Ge(0), Le(2**32 - 1)] | None = key("seeds every RNG (null: unseeded)")
    train: bool = key("train (false: validate ckpt_path)", True)
    test: bool = key("evaluate data.test_sets after training", False)
    resume: Literal["auto", "never"] = key("continue from this run dir's last.ckpt", "auto")
    optimized_metric: str | None = key("the metric returned to sweepers")
    loss: LossConfig | None = key("the loss group: mse, l1, perceptual, gan, or a _target_")
    model: Model = key("the model group: module, net, optimizer, schedule")
    data: DataConfig = key("the data group")
    trainer: TrainerConfig = key("the trainer group")
    logger: dict[str, LoggerConfig | None] | None = key("loggers by name (null: drop)")
    paths: PathsConfig | None = key("the paths group")
    extras: ExtrasConfig | None = key("the extras group")
    search: dict[str, Any] | None = key("values an hparams_search sweeps (hparams_search=optuna)")
    degradation: DegradationConfig | None = key("the LR model (conf/degradation/)")

    @model_validator(mode="after")
    def _patch_fits_the_scale(self) -> TrainConfig:
        model, scale = self.model, self.scale
        patch = hr_patch(scale, self.data.scales, model.patch_lr, model.patch_hr)
        if patch is not None and patch < 2 * scale:
            given = "patch_lr" if model.patch_lr is not None else "patch_hr"
            raise ValueError(
                f"model.{given}={getattr(model, given)}: the training patch ({patch} HR pixels) "
                f"is smaller than two LR pixels at x{scale}; use at least model.patch_lr=2 "
                f"(or model.patch_hr={2 * scale})."
            )
        return self

    @model_validator(mode="after")
    def _gan_has_an_adversarial_term(self) -> TrainConfig:
        # a model config picks no loss: model=srgan alone trains with the default loss (mse)
        loss = self.loss
        if isinstance(self.model, SRGANModel) and not getattr(loss, "adversarial", None):
            raise ValueError(
                "model=srgan needs loss.adversarial (use loss=gan, as experiment=srgan_x4 "
                "does); for content-only training use model=srresnet loss=perceptual."
            )
        return self


class EvalConfig(Common):
    task_name: str = key("names the log folder (logs/<task_name>/)", "eval")
    run_name: str | None = key("the W&B group of an eval run of its own")
    tags: list[str] | None = key("W&B tags")
    weights: str | None = key("an exported or released generator file")
    outputs: str | None = key("score precomputed SR images <dir>/<set>/<name>.png (no model)")
    overwrite: bool = key("replace an earlier results.json in this run dir", False)
    tta: bool = key("x8 self-ensemble (flips and rotations)", False)
    save_images: bool = key("write the SR images under <run dir>/images/", False)
    tile: TileSize = key("LR tile size (0: whole image, auto: from free memory)", 0)
    tile_overlap: TileSize = key("LR context per tile side (auto: the receptive field)", "auto")
    perceptual: PerceptualEval | None = key("LPIPS / DISTS beside PSNR / SSIM")
    degradation: DegradationConfig | None = key("the LR model of HR-only sets")
    data: DataConfig = key("the data group (test_sets)")
    trainer: TrainerConfig | None = key("the trainer group (device, precision)")
    logger: dict[str, LoggerConfig | None] | None = key("logger=wandb: results to W&B")
    paths: PathsConfig | None = key("the paths group")
    extras: ExtrasConfig | None = key("the extras group")


class VideoConfig(Strict):
    codec: str = key("encoder: libx264 | libx265 | libsvtav1 | libvpx-vp9 | ffv1 | ...", "libx264")
    crf: NonNegInt | None = key("quality (null: the codec's default, 18 for x264/x265)")
    preset: str | None = key("encoder preset (null: veryfast for x264/x265)")
    pix_fmt: str | None = key("output pixel format (null: the input's)")
    batch_size: PosInt = key("frames per forward pass", 4)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = key("net precision for video", "auto")
    channels_last: bool = key("channels-last memory format", True)
    threads: NonNegInt = key("encoder threads (0: the codec's choice)", 0)


class UpscaleConfig(Common):
    input: str | None = key("an image, a folder, or a quoted glob")
    recursive: bool = key("folders: look in sub-folders too", False)
    output: str | None = key("the output folder (or a file, for one image or one video)")
    weights: str | None = key(".safetensors / .pt / .pth generator weights")
    onnx: str | None = key("an .onnx file from sr-export")
    torchscript: str | None = key("a .torchscript file from sr-export (trusted files only)")
    device: str = key("cpu | cuda | cuda:N | auto", "auto")
    precision: Literal["fp32", "bf16", "fp16"] = key("autocast precision", "fp32")
    channels_last: bool = key("channels-last memory format", False)
    compile: bool = key("torch.compile the net", False)
    tile: TileSize = key("LR tile size (0: whole image, auto: what fits in memory)", "auto")
    tile_overlap: TileSize = key("LR context per tile side (auto: the receptive field)", "auto")
    batch_size: PosInt = key("tiles per forward pass", 1)
    memory_fraction: Annotated[float, Gt(0.0), Le(1.0)] = key("share of free memory for tiles", 0.5)
    format: Literal["png", "jpg", "webp", "bmp", "tif", "same"] = key("output format", "png")
    suffix: str = key("output name suffix; {scale} is the model's scale", "_x{scale}")
    overwrite: bool = key("replace existing outputs", False)
    skip_existing: bool = key("skip inputs whose output exists", False)
    skip_bad: bool = key("skip undecodable inputs with a warning", False)
    progress: bool = key("a progress bar", True)
    video: VideoConfig | None = key("video inputs: codec, quality, frames per pass")


class ExportConfig(Common):
    weights: str | None = key("a generator state dict (.pt / .pth / .safetensors)")
    format: Literal["onnx", "safetensors", "torchscript"] = key("what to write", "onnx")
    output: str | None = key("the output file (default: beside the source)")
    opset: Annotated[int, Ge(17)] = key("ONNX operator set", 18)
    verify: bool = key("compare the written file with PyTorch", True)
    overwrite: bool = key("replace an existing output", False)


SCHEMAS: dict[str, type[Strict]] = {
    "train": TrainConfig,
    "eval": EvalConfig,
    "upscale": UpscaleConfig,
    "export": ExportConfig,
}


# -- the config as plain values --------------------------------------------------------------


def plain(cfg: Any, path: str = "", derived: set[str] | None = None) -> Any:
    """``cfg`` as plain containers, resolved node by node.

    Paths of values copied by interpolation (``data.test_sets: ${data.val_sets}``) go into
    ``derived``: a problem there is reported at its source. A value that cannot be resolved
    here (it needs the run, e.g. ``${hydra:runtime.output_dir}``) is left out, for the app to
    meet.
    """
    derived = set() if derived is None else derived
    if isinstance(cfg, DictConfig):
        out: dict[str, Any] = {}
        for name in cfg:
            sub = f"{path}.{name}" if path else str(name)
            if OmegaConf.is_missing(cfg, name):
                continue  # `???`: mandatory, asked for by the code that needs it
            if OmegaConf.is_interpolation(cfg, name):
                derived.add(sub)
            try:
                value = cfg[name]
            except Exception:
                continue
            out[str(name)] = plain(value, sub, derived)
        return out
    if isinstance(cfg, ListConfig):
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except Exception:
            return []
    return cfg


# -- error messages --------------------------------------------------------------------------


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """(base type, constraints) of an ``Annotated`` type."""
    metadata: list[Any] = []
    while typing.get_origin(annotation) is Annotated:
        args = typing.get_args(annotation)
        annotation, metadata = args[0], [*metadata, *args[1:]]
    return annotation, metadata


def _members(annotation: Any) -> list[Any]:
    annotation, _ = _unwrap(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _bounds(metadata: list[Any]) -> str:
    parts = []
    for m in metadata:
        for cls, attr, sign in (
            (Ge, "ge", ">="),
            (Gt, "gt", ">"),
            (Le, "le", "<="),
            (Lt, "lt", "<"),
        ):
            if isinstance(m, cls):
                bound = getattr(m, attr)
                parts.append(f"{sign} {bound:g}" if isinstance(bound, float) else f"{sign} {bound}")
    return " and ".join(parts)


def describe(annotation: Any) -> str:
    """What a key allows, in words: ``an integer >= 1``, ``'auto' or 'never'``, ``null``."""
    words: list[str] = []
    for member in _flat(annotation):
        base, metadata = _unwrap(member)
        bounds = _bounds(metadata)
        if base is type(None):
            text = "null"
        elif base is bool:
            text = "true or false"
        elif base is int:
            text = "an integer"
        elif base is float:
            text = "a number"
        elif base is str:
            text = "a string"
        elif typing.get_origin(base) is Literal:
            options = [_show(v) for v in typing.get_args(base)]
            text = " or ".join(options) if len(options) < 3 else f"one of {', '.join(options)}"
        elif typing.get_origin(base) is list:
            (item,) = typing.get_args(base) or (Any,)
            text = f"a list ({'each ' + describe(item)})"
            bounds = ""
        elif typing.get_origin(base) is dict:
            text = "a mapping"
        elif isinstance(base, type) and issubclass(base, BaseModel):
            text = "a mapping of its keys"
        else:
            text = "any value"
        words.append(f"{text} {bounds}".strip())
    unique = list(dict.fromkeys(words))
    return ", ".join(unique[:-1]) + f" or {unique[-1]}" if len(unique) > 1 else unique[0]


def _flat(annotation: Any) -> list[Any]:
    """Union members, keeping each one's own constraints (``Annotated[int, Ge(1)] | None``)."""
    base, metadata = _unwrap(annotation)
    if typing.get_origin(base) in (Union, types.UnionType):
        out = []
        for arg in typing.get_args(base):
            for member in _flat(arg):
                out.append(Annotated[(member, *metadata)] if metadata else member)
        return out
    return [annotation]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    out: list[type[BaseModel]] = []
    for member in _members(annotation):
        if typing.get_origin(member) is dict:
            out += _models_in(typing.get_args(member)[1])
        elif isinstance(member, type) and issubclass(member, BaseModel):
            out.append(member)
    return out


# the classes behind the tags of the tagged unions above (a pydantic error's location names them)
TAGS: dict[str, type[BaseModel]] = {
    "folder_set": SetSpec,
    "paired_set": PairedSetSpec,
    "builtin_loss": BuiltinLoss,
    "custom_loss": CustomLoss,
    "budget": BudgetLRConfig,
    "other": SchedulerConfig,
    "srcnn": SRCNNModel,
    "vdsr": VDSRModel,
    "srgan": SRGANModel,
    "base": ModelConfig,
    "custom": CustomModel,
}


def _annotation(info: Any) -> Any:
    """A field's type with its constraints (pydantic keeps a bare field's apart)."""
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _keys(classes: list[type[BaseModel]]) -> list[str]:
    return sorted({info.alias or f for c in classes for f, info in c.model_fields.items()})


def _field(schema: type[BaseModel], parts: list[str], tags: set[str]) -> tuple[Any, list[str]]:
    """(annotation with its constraints, sibling keys) of the key at ``parts`` under ``schema``;
    the annotation is None for a key the schema does not know. ``tags`` (from the error's
    location) pick the class of a tagged union."""
    classes: list[type[BaseModel]] = [schema]
    annotation: Any = None
    skip_entry = False
    for name in parts:
        if name.startswith("["):  # a list item
            for member in _members(annotation):
                if typing.get_origin(member) is list:
                    annotation = typing.get_args(member)[0]
                    break
            classes = _models_in(annotation)
            continue
        if skip_entry:  # the entry's name in a dict section (callbacks.<name>)
            skip_entry = False
            continue
        tagged = [c for c in classes if any(TAGS.get(t) is c for t in tags)]
        classes = tagged or classes
        info = next(
            (f for c in classes for n, f in c.model_fields.items() if name in (n, f.alias)), None
        )
        if info is None:
            return None, _keys(classes)
        siblings = _keys(classes)
        annotation = _annotation(info)
        classes = _models_in(annotation)
        skip_entry = any(typing.get_origin(m) is dict for m in _members(annotation))
    return annotation, siblings if parts else []


def _path(loc: tuple, data: Any) -> list[str]:
    """The config keys of a pydantic error location (union tags and type names left out)."""
    parts: list[str] = []
    for item in loc:
        if isinstance(data, dict) and item in data:
            data = data[item]
            parts.append(str(item))
        elif isinstance(data, list) and isinstance(item, int) and item < len(data):
            data = data[item]
            parts.append(f"[{item}]")
    return parts


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value if value and value.strip() == value and " " not in value else repr(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def problems(
    err: ValidationError, data: dict, schema: type[BaseModel], derived: set[str]
) -> list[str]:
    """One line per wrong key: the key, its value, what is allowed, ``did you mean``."""
    lines: dict[str, str] = {}
    for error in err.errors():
        loc = tuple(error["loc"])
        tags = {item for item in loc if isinstance(item, str)}
        if error["type"] in ("extra_forbidden", "missing"):
            parts = [*_path(loc[:-1], data), str(loc[-1])]
        else:
            parts = _path(loc, data)
        keyname = ".".join(parts).replace(".[", "[")
        if error["type"] == "missing":
            lines.setdefault(keyname, f"{keyname}: missing; it is required here.")
            continue
        across = not parts or isinstance(_lookup(data, parts), dict)
        if error["type"] == "value_error" and across:  # a check across a section's keys
            text = error["msg"].removeprefix("Value error, ")
            lines.setdefault(text, text)
            continue
        annotation, siblings = _field(schema, parts, tags)
        if error["type"] == "extra_forbidden":
            where = keyname.rpartition(".")[0]
            close = closest(parts[-1], siblings)
            prefix = f"{where}." if where else ""
            hint = (
                f"did you mean {' or '.join(prefix + c for c in close)}?"
                if close
                else f"the keys of {where or 'the config'}: {', '.join(siblings)}"
            )
            lines.setdefault(keyname, f"{keyname}: no such key; {hint}")
            continue
        value = _show(_lookup(data, parts)) if parts else ""
        if annotation is not None:
            text = f"{keyname}={value}: must be {describe(annotation)}."
        else:
            text = f"{keyname}={value}: {error['msg']}."
        lines.setdefault(keyname, text)
    own = {k: v for k, v in lines.items() if not _is_derived(k, derived)}
    return list((own or lines).values())


def _lookup(data: Any, parts: list[str]) -> Any:
    for part in parts:
        data = data[int(part[1:-1])] if part.startswith("[") else data[part]
    return data


def _present(data: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _is_derived(keyname: str, derived: set[str]) -> bool:
    """True when the key, or a section above it, is an interpolation of another key."""
    parts = keyname.replace("[", ".[").split(".")
    return any(".".join(parts[:n]).replace(".[", "[") in derived for n in range(1, len(parts) + 1))


def check_config(cfg: DictConfig | dict, app: str) -> None:
    """Validate ``cfg`` (without its ``hydra`` node) against ``app``'s schema.

    Raises :class:`ConfigError` listing each wrong key in a line: the key, the value, what is
    allowed, and ``did you mean …?`` for an unknown key (at most :data:`MAX_PROBLEMS`).
    """
    model = cfg.get("model")
    if app == "train" and model is not None and model.get("method") == "bicubic":
        # a clearer word than the schema's (bicubic has no optimizer): say it first
        raise ConfigError("bicubic has no weights to train; use sr-eval model=bicubic")
    schema = SCHEMAS[app]
    derived: set[str] = set()
    data = plain(cfg, "", derived) if isinstance(cfg, DictConfig) else dict(cfg)
    data.pop("hydra", None)
    moved = [k for k in MOVED if _present(data, k.split("."))]
    try:
        schema.model_validate(data)
        found = []
    except ValidationError as err:
        found = problems(err, data, schema, derived)
    found = [moved_message(k) for k in moved] + [
        line for line in found if not line.startswith(tuple(f"{k}: " for k in moved))
    ]
    if found:
        shown = found[:MAX_PROBLEMS]
        if len(found) > MAX_PROBLEMS:
            shown.append(f"... and {len(found) - MAX_PROBLEMS} more")
        if len(shown) > 1:
            shown = [f"{len(found)} config values cannot work:", *(f"- {p}" for p in shown)]
        raise ConfigError("\n".join(shown)) from None


# -- the config references in docs/ -----------------------------------------------------------

# where each app's reference table lives, between <!-- schema:APP --> markers
REFERENCE_DOCS = {
    "train": "docs/training.md",
    "eval": "docs/evaluation.md",
    "upscale": "docs/inference.md",
    "export": "docs/inference.md",
}
# sections the other apps share with sr-train: one row each there (sr-train's table has them)
SHARED_SECTIONS = ("model", "data", "trainer", "degradation.options")


def reference(
    schema: type[BaseModel], prefix: str = "", brief: tuple[str, ...] = ()
) -> Iterator[tuple[str, str, str]]:
    """(key, allowed values, description) of every documented key, depth first; the sections
    named in ``brief`` are one row each."""
    for name, info in schema.model_fields.items():
        keyname = f"{prefix}{info.alias or name}"
        models = _models_in(info.annotation)
        if keyname in brief:
            yield keyname, "a section", f"{info.description}: its keys are sr-train's"
            continue
        if models and not issubclass(models[0], Open) and models[0] is not schema:
            yield keyname, "a section", info.description or ""
            seen: set[str] = set()
            for model in models:
                for row in reference(model, f"{keyname}.", brief):
                    if row[0] not in seen:
                        seen.add(row[0])
                        yield row
            continue
        yield keyname, describe(_annotation(info)), info.description or ""


def markdown(app: str) -> str:
    """``app``'s reference table (sr-train's in full; the others link their shared sections)."""
    rows = ["| key | allowed | what it is |", "|---|---|---|"]
    brief = () if app == "train" else SHARED_SECTIONS
    rows += [f"| `{k}` | {a} | {d} |" for k, a, d in reference(SCHEMAS[app], brief=brief)]
    return "\n".join(rows)


def markers(app: str) -> tuple[str, str]:
    return f"<!-- schema:{app} -->\n", f"\n<!-- /schema:{app} -->"


def with_reference(text: str, app: str) -> str:
    """``text`` (a doc) with ``app``'s table between its markers replaced by the schema's."""
    begin, end = markers(app)
    head, rest = text[: text.index(begin) + len(begin)], text[text.index(end) :]
    return head + markdown(app) + rest


def write_references(root: Path) -> list[Path]:
    """Regenerate every app's table in its doc under ``root`` (the checkout); the docs changed."""
    changed = []
    for app, doc in REFERENCE_DOCS.items():
        path = root / doc
        text = path.read_text(encoding="utf-8")
        new = with_reference(text, app)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":  # python -m sr_lightning.runtime.schema [app | --write]
    import sys

    arg = sys.argv[1] if len(sys.argv) > 1 else "train"
    if arg == "--write":
        for path in write_references(Path(__file__).resolve().parents[2]):
            print(f"rewrote {path}")
    else:
        print(markdown(arg))
