#!/usr/bin/env python
"""The baseline sr-train is measured against: a plain PyTorch loop, no Lightning, no Hydra.

ESPCN x3 (``--scale 2`` or ``4`` for x2 / x4) on T91 luma: LR made once per image (MATLAB
bicubic, 8-bit rounding), aligned LR/HR crops cut with numpy in the main process, random rot90
+ flips, batch 16, 17 px LR patches, ReLU (``--activation tanh``: the paper's), Adam 1e-3 on
every layer (``--last-layer-lr-mult 0.1``: the paper's last layer at lr x0.1), lr x0.1 at 80 %
of the budget (steps or wall time); the ESPCN presets' recipe. ``--precision bf16``: forward
and loss under ``torch.autocast("cpu", torch.bfloat16)``, fp32 weights and Adam, as
Lightning's ``trainer.precision=bf16-mixed`` does. Set5 and Set14 at that scale are evaluated
once, at the end, with the project's metric functions (independent of sr-train's validation).
``--model srresnet`` trains SRResNet x4 on RGB instead (small patches for a CPU).

    python scripts/plain_loop.py --minutes 1            # {"steps": ..., "set5": ...} on stdout
    python scripts/plain_loop.py --steps 500 --model srresnet --lr-patch 12
    python scripts/plain_loop.py --minutes 2 --threads 2 --precision bf16
    python scripts/plain_loop.py --minutes 30 --scale 4 --precision bf16
    python scripts/plain_loop.py --steps 25000 --last-layer-lr-mult 0.1 --eval Set5,Set14,BSD200
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sr_lightning.common.color import to_luma_uint8
from sr_lightning.common.pixels import quantize
from sr_lightning.core.metrics import psnr_y
from sr_lightning.data.images import list_images, load_image
from sr_lightning.data.imresize import imresize
from sr_lightning.nets.espcn import ESPCN
from sr_lightning.nets.srresnet import SRResNet


def load(folder: Path, channels: int, scale: int) -> list[np.ndarray]:
    """uint8 HR images (C, H, W), modcropped to the scale."""
    out = []
    for path in list_images(folder):
        img = load_image(path)
        img = to_luma_uint8(img) if channels == 1 else img.expand(3, -1, -1)
        h, w = img.shape[-2:]
        out.append(img[:, : h - h % scale, : w - w % scale].numpy())
    return out


def downscale(hr: np.ndarray, scale: int, rounded: bool) -> np.ndarray:
    lr = imresize(torch.from_numpy(hr).float().div(255)[None], 1 / scale)[0]
    return (quantize(lr) if rounded else lr).numpy().astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    p.add_argument("--model", choices=["espcn", "srresnet"], default="espcn")
    p.add_argument("--minutes", type=float, help="wall-clock budget of training")
    p.add_argument("--steps", type=int, help="step budget (instead of --minutes)")
    p.add_argument("--scale", type=int, help="ESPCN's scale (default 3); SRResNet is x4")
    p.add_argument("--lr-patch", type=int, default=17)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="autocast")
    p.add_argument("--activation", choices=["relu", "tanh"], default="relu", help="ESPCN's")
    p.add_argument(
        "--last-layer-lr-mult", type=float, default=1.0, help="ESPCN's last conv at lr x this"
    )
    p.add_argument("--eval", default="Set5,Set14", help="sets to evaluate at the end, or none")
    p.add_argument("--save", type=Path, help="write the net's state_dict here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    espcn = args.model == "espcn"
    if args.scale and not espcn and args.scale != 4:
        raise SystemExit(f"--scale {args.scale}: --model srresnet trains x4 only")
    scale, channels = (args.scale or 3, 1) if espcn else (4, 3)
    net = ESPCN(scale, channels, activation=args.activation) if espcn else SRResNet(scale, channels)
    lr = 1e-3 if espcn else 1e-4
    mult = args.last_layer_lr_mult if espcn else 1.0
    last = set(map(id, net.last_layer_parameters())) if mult != 1.0 else set()
    groups = [{"params": [q for q in net.parameters() if id(q) not in last]}]
    if last:
        groups.append({"params": [q for q in net.parameters() if id(q) in last], "lr": lr * mult})
    opt = torch.optim.Adam(groups, lr=lr)
    hrs = load(args.data_dir / "T91", channels, scale)
    pairs = [(downscale(hr, scale, True), hr.astype(np.float32) / 255) for hr in hrs]
    s, ps = args.lr_patch, args.lr_patch * scale
    budget = args.steps if args.steps else args.minutes * 60
    start, step, decayed, data_s = time.perf_counter(), 0, False, 0.0
    while True:
        t0 = time.perf_counter()
        done = (step if args.steps else time.perf_counter() - start) / budget
        if done >= 1:
            break
        if done >= 0.8 and not decayed:
            for g in opt.param_groups:
                g["lr"] *= 0.1
            decayed = True
        lr_b, hr_b = [], []
        for i in rng.integers(len(pairs), size=args.batch):
            lr, hr = pairs[i]
            y = rng.integers(lr.shape[1] - s + 1)
            x = rng.integers(lr.shape[2] - s + 1)
            a = lr[:, y : y + s, x : x + s]
            b = hr[:, y * scale : y * scale + ps, x * scale : x * scale + ps]
            k, flip = rng.integers(4), rng.integers(2)
            a, b = np.rot90(a, k, (1, 2)), np.rot90(b, k, (1, 2))
            if flip:
                a, b = a[:, :, ::-1], b[:, :, ::-1]
            lr_b.append(a)
            hr_b.append(b)
        x_b, y_b = torch.from_numpy(np.stack(lr_b)), torch.from_numpy(np.stack(hr_b))
        data_s += time.perf_counter() - t0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = torch.nn.functional.mse_loss(net(x_b), y_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
    train_s = time.perf_counter() - start
    result = {
        "model": args.model,
        "activation": args.activation if espcn else None,
        "last_layer_lr_mult": mult,
        "precision": args.precision,
        "scale": scale,
        "steps": step,
        "train_s": train_s,
        "data_s": data_s,
    }
    result["steps_per_s"] = step / train_s
    net.eval()
    with torch.no_grad():
        for name in [] if args.eval == "none" else args.eval.split(","):
            psnrs = []
            for hr in load(args.data_dir / name, channels, scale):
                lr = torch.from_numpy(downscale(hr, scale, rounded=False))[None]
                hr_t = torch.from_numpy(hr).float().div(255)[None]
                psnrs.append(float(psnr_y(net(lr), hr_t, crop=scale)))
            result[name.lower()] = float(np.mean(psnrs))
    if args.save:
        torch.save(net.state_dict(), args.save)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
