"""``trainer.precision=auto``: the precision this machine trains fastest in without loss scaling.

bfloat16 autocast (Lightning's ``bf16-mixed``: the net's products in bfloat16, fp32 weights,
Adam and loss, no GradScaler) pays where the hardware has bfloat16 arithmetic: CPUs with
AVX512-BF16 or AMX (Zen 4, Sapphire Rapids and newer) and GPUs that support bfloat16. Elsewhere
oneDNN would emulate it, slower than float32, so ``auto`` keeps ``32-true`` there. Lightning
itself has no ``auto`` precision: sr-train resolves it before building the Trainer and logs
what it chose and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

AUTO = "auto"
BF16 = "bf16-mixed"
FP32 = "32-true"


def cpu_bf16_instructions() -> str | None:
    """The CPU's native bfloat16 instructions (``"AMX"``, ``"AVX512-BF16"``), else None."""
    checks = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
    for name, check in checks:
        probe = getattr(torch.cpu, check, None)
        try:
            if probe is not None and probe():
                return name
        except RuntimeError:
            continue
    return None


def cuda_has_bf16() -> bool:
    """True when the current CUDA GPU computes in bfloat16 natively (Ampere and newer)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch without including_emulation
        return torch.cuda.is_bf16_supported()


def training_device(accelerator: str) -> str:
    """``cpu`` or ``cuda`` (other accelerators by name) for ``trainer.accelerator``."""
    accelerator = accelerator.lower()
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return accelerator


def resolve_precision(trainer_cfg: Mapping[str, Any]) -> tuple[Any, str]:
    """``trainer.precision`` as Lightning takes it, and why (empty unless ``auto``).

    ``auto``: ``bf16-mixed`` on a CPU with AVX512-BF16 or AMX and on a bfloat16 GPU,
    ``32-true`` everywhere else (older CPUs, ARM, MPS). Any other value passes through.
    """
    precision = trainer_cfg.get("precision", FP32)
    if str(precision) != AUTO:
        return precision, ""
    device = training_device(str(trainer_cfg.get("accelerator", AUTO)))
    if device == "cpu":
        found = cpu_bf16_instructions()
        if found:
            return BF16, f"this CPU has {found}"
        return FP32, "this CPU has neither AVX512-BF16 nor AMX (bfloat16 would be emulated)"
    if device == "cuda":
        if cuda_has_bf16():
            return BF16, "this GPU computes in bfloat16"
        return FP32, "this GPU has no native bfloat16"
    return FP32, f"no bfloat16 choice for accelerator {device}"
