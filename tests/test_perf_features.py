"""Performance options: persistent workers, pinned memory, batched crops, channels_last,
bf16-mixed, torch.compile, and the fairness of the benchmark's two training loops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer

from scripts import bench
from sr_lightning.core.builders import build_module
from sr_lightning.data.datamodule import SRDataModule
from sr_lightning.data.datasets import ImageSet, PatchDataset
from sr_lightning.data.imresize import imresize
from sr_lightning.modules.espcn import ESPCNModule
from tests.helpers.data import make_datamodule

ROOT = Path(__file__).resolve().parent.parent

ESPCN = {
    "net": {"_target_": "sr_lightning.nets.espcn.ESPCN", "scale": 2, "channels": 1},
    "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
    "scale": 2,
    "channels": 1,
}


def make_dm(root, **kwargs) -> SRDataModule:
    return make_datamodule(root, **{"channels": 1, **kwargs})


@pytest.mark.parametrize("persistent", [True, False])
def test_persistent_workers_live_across_epochs(tiny_data, persistent):
    dm = make_dm(tiny_data, num_workers=1, persistent_workers=persistent)
    loader = dm.train_dataloader()
    first = iter(loader)
    list(first)
    pids = [w.pid for w in first._workers]
    second = iter(loader)
    list(second)
    if persistent:
        assert second is first and [w.pid for w in second._workers] == pids
    else:
        assert second is not first and [w.pid for w in second._workers] != pids


def test_persistent_workers_need_workers(tiny_data):
    loader = make_dm(tiny_data, num_workers=0, persistent_workers=True).train_dataloader()
    assert loader.persistent_workers is False  # torch refuses it without workers


@pytest.mark.parametrize("device,pinned", [("cpu", False), ("cuda", True)])
def test_pin_memory_only_when_batches_go_to_cuda(tiny_data, device, pinned):
    dm = make_dm(tiny_data, pin_memory=True, device_cache="false")  # host-fed batches
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
    assert dm.train_dataloader().pin_memory is pinned
    dm.pin_memory = False
    assert dm.train_dataloader().pin_memory is False


def test_batched_crops_are_valid_and_cover_every_position():
    # pixel value encodes its position, so a crop tells where it was taken
    h, w, p = 20, 21, 16
    grid = (torch.arange(h).view(h, 1) * 32 + torch.arange(w)).to(torch.int32)
    image = grid.view(1, h, w)
    dataset = PatchDataset(ImageSet("t", ["a"], [image]), p, patches_per_image=64)
    seen = set()
    for _ in range(40):
        for crop in dataset.__getitems__(list(range(64))):
            top, left = divmod(int(crop[0, 0, 0]), 32)
            assert torch.equal(crop, image[:, top : top + p, left : left + p])
            seen.add((top, left))
    assert seen == {(t, c) for t in range(h - p + 1) for c in range(w - p + 1)}


def test_fixed_crops_repeat_per_index():
    image = torch.randint(0, 255, (1, 40, 40), dtype=torch.uint8)
    dataset = PatchDataset(ImageSet("t", ["a"], [image]), 16, 8, random_crops=False)
    first = dataset.__getitems__(list(range(8)))
    again = [dataset[i] for i in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert len({tuple(c.flatten()[:4].tolist()) for c in first}) > 1  # not all the same crop


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    eager = ESPCNModule(**ESPCN)
    fast = ESPCNModule(**ESPCN, channels_last=True)
    fast.load_state_dict(eager.state_dict())
    fast.configure_model()
    assert fast.net.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 1, 12, 12)
    torch.testing.assert_close(fast(x), eager(x), rtol=1e-5, atol=1e-5)


def test_compile_compiles_the_net_only(monkeypatch):
    compiled = []

    class Eager(torch.nn.Module):
        """What torch.compile returns, minus inductor: a wrapper that calls the original."""

        def __init__(self, fn) -> None:
            super().__init__()
            object.__setattr__(self, "fn", fn)  # not a submodule: no duplicate weights

        def forward(self, *args, **kwargs):
            return self.fn(*args, **kwargs)

    def spy(target, *args, **kwargs):
        compiled.append(target)
        return Eager(target)

    monkeypatch.setattr(torch, "compile", spy)
    torch.manual_seed(0)
    module = ESPCNModule(**ESPCN, compile=True)
    module.configure_model()
    module.configure_model()  # Lightning may call it again (e.g. on resume): compile once
    assert len(compiled) == 1
    target = compiled[0]
    assert target is module.net or getattr(target, "__self__", None) is module.net
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(module(x), module.net(x))


@pytest.mark.slow
def test_compiled_and_eager_outputs_and_gradients_agree(tmp_path):
    """Real inductor on the CPU (about a minute), in a fresh process so that the kernel cache
    goes where configure_compile_cache points it."""
    script = textwrap.dedent(
        f"""
        import os, torch
        from sr_lightning.data.cache import configure_compile_cache
        from sr_lightning.modules.espcn import ESPCNModule
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        configure_compile_cache({str(tmp_path)!r})
        torch.set_num_threads(1)
        cfg = {ESPCN!r}
        torch.manual_seed(0)
        eager = ESPCNModule(**cfg)
        compiled = ESPCNModule(**cfg, compile=True)
        compiled.load_state_dict(eager.state_dict())
        compiled.configure_model()
        x = torch.rand(2, 1, 12, 12)
        a, b = eager(x), compiled(x)
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
        a.square().mean().backward(); b.square().mean().backward()
        for p, q in zip(eager.net.parameters(), compiled.net.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5)
        print("OK")
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
    assert any((tmp_path / "inductor").rglob("*.py")), "inductor wrote no kernels to the cache"


def test_bf16_mixed_runs_the_net_in_bfloat16(tiny_data):
    dm = make_dm(tiny_data)
    module = ESPCNModule(**ESPCN)
    dtypes = []
    module.net.body.conv1.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    before = module.net.body.conv1.weight.detach().clone()

    losses: list[float] = []

    class Losses(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = Trainer(
        accelerator="cpu",
        precision="bf16-mixed",
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Losses()],
    )
    trainer.fit(module, datamodule=dm)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert module.net.body.conv1.weight.dtype == torch.float32  # master weights stay fp32
    assert not torch.equal(module.net.body.conv1.weight, before)
    assert len(losses) == 2 and all(np.isfinite(losses))


# -- the benchmark's own correctness ------------------------------------------------------------


def test_benchmark_loops_take_the_same_training_step(tmp_path):
    """framework_overhead compares like with like: both loops reach the same weights."""
    cfg = bench.compose_config(["model=espcn", "scale=3", "channels=1"], tmp_path)
    batch = bench.make_batch(cfg, 4)
    torch.manual_seed(0)
    plain = build_module(cfg)
    torch.manual_seed(0)
    lightning = build_module(cfg)
    start = [p.detach().clone() for p in plain.net.parameters()]
    bench.plain_loop(plain, batch, 3)
    bench.lightning_loop(cfg, lightning, batch, 3, progress_bar=False)
    for a, b, s in zip(plain.net.parameters(), lightning.net.parameters(), start, strict=True):
        assert not torch.equal(a, s)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_numpy_reference_imresize_matches_the_torch_one():
    x = np.random.default_rng(0).random((2, 3, 37, 29))
    for scale in (0.25, 1 / 3, 2.0):
        ref = bench.numpy_imresize(x, scale)
        np.testing.assert_allclose(imresize(torch.from_numpy(x), scale).numpy(), ref, atol=1e-12)


def test_benchmarks_train_espcn_x3_in_fp32_as_their_plain_loop_does(tmp_path):
    """The preset's trainer.precision=auto is no value Lightning's Trainer takes, and bf16
    sr-train beside the fp32 plain loop would not be a fair comparison."""
    from scripts import bench_e2e

    cfg = bench.compose_config(bench.ESPCN_X3_FP32, tmp_path)
    assert cfg.trainer.precision == "32-true" and cfg.run_name == "espcn_x3"
    e2e = bench.compose_config(bench_e2e.MODELS["espcn_x3"][0], tmp_path)
    assert e2e.trainer.precision == "32-true"
    assert bench.compose_config(["experiment=espcn_x3"], tmp_path).trainer.precision == "auto"


def test_benchmark_docs_keep_other_sections(tmp_path):
    md = tmp_path / "benchmarks.md"
    md.write_text(
        "# Benchmarks\n\n<!-- presets:start -->\nPRESETS\n<!-- presets:end -->\n\n"
        "<!-- perf:start -->\nold numbers\n<!-- perf:end -->\n\n"
        "<!-- inference:start -->\nINFERENCE\n<!-- inference:end -->\n"
    )
    bench.write_markdown(md, "new numbers")
    text = md.read_text()
    assert "old numbers" not in text and "new numbers" in text
    assert "PRESETS" in text and "INFERENCE" in text
    assert text.index("PRESETS") < text.index("new numbers") < text.index("INFERENCE")
    fresh = tmp_path / "fresh.md"
    bench.write_markdown(fresh, "first")
    assert fresh.read_text().startswith("# Benchmarks") and "first" in fresh.read_text()


def test_gpu_bench_smoke_runs_on_the_cpu(tmp_path):
    """The prepared GPU check (scripts/bench_gpu.py) runs end to end, on the CPU here."""
    from scripts import bench_gpu

    md = tmp_path / "benchmarks.md"
    md.write_text("# Benchmarks\n\nother sections stay\n")
    out = tmp_path / "gpu.json"
    results = bench_gpu.main(["--device", "cpu", "--quick", "--json", str(out), "--md", str(md)])
    assert json.loads(out.read_text())["feed"] == results["feed"]
    assert results["feed"]["device_cache"]["crops_equal_host_slices"] is True
    consumed = results["consumed"]
    assert consumed["fp32+channels_last"]["max_abs_diff_vs_fp32"] < 1e-4
    assert 0 < consumed["bf16-mixed"]["max_abs_diff_vs_fp32"] < 0.1  # bf16 really ran
    assert results["imresize"]["max_abs_diff_vs_cpu_float64"] < 1e-5
    assert results["nccl_ddp"] == {"ran": False, "why": "NCCL needs a CUDA device (this run: cpu)"}
    text = md.read_text()
    assert "other sections stay" in text and "## GPU (`scripts/bench_gpu.py`)" in text
    assert text.count(bench_gpu.GPU_START) == text.count(bench_gpu.GPU_END) == 1
