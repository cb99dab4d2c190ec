"""The typed config schema (sr_lightning/runtime/schema.py): every shipped config passes it, and
a bad value or an unknown key is refused by the real console script in one short block that
names the key, before anything heavy is imported.

Timings are not asserted here: scripts/bench_startup.py measures them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from sr_lightning.core.config import CONF_DIR
from sr_lightning.runtime.errors import ConfigError
from sr_lightning.runtime.schema import (
    REFERENCE_DOCS,
    SCHEMAS,
    check_config,
    describe,
    markdown,
    with_reference,
)
from tests.helpers.config import model_overrides

MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
# sr-train refuses model=bicubic (no weights to train): tests/test_new_user.py
TRAINABLE = [m for m in MODELS if m != "bicubic"]
GROUPS = [
    f"{group}={p.stem}"
    for group in ("data", "loss", "trainer", "logger", "debug", "callbacks", "degradation")
    for p in sorted((CONF_DIR / group).glob("*.yaml"))
    if p.stem != "default" or group == "trainer"
]


def script(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def run(prog: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    for key in ("HYDRA_FULL_ERROR", "SR_DEBUG"):
        if key not in env:
            full_env.pop(key, None)
    return subprocess.run(
        [script(prog), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300
    )


# -- every shipped config passes -------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [[], *(model_overrides(m) for m in TRAINABLE), *([f"experiment={e}"] for e in EXPERIMENTS)]
    + [[g] for g in GROUPS]
    + [["hparams_search=optuna"]],
    ids=str,
)
def test_every_training_config_passes_the_schema(compose_train, overrides):
    check_config(compose_train(*overrides), "train")


@pytest.mark.parametrize("app", ["eval", "upscale", "export"])
@pytest.mark.parametrize("model", [None, *MODELS])
def test_every_app_config_passes_the_schema(app, model):
    overrides = [f"model={model}"] if model else []
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(app, overrides=overrides)
    GlobalHydra.instance().clear()
    check_config(cfg, app)


# -- the messages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.batch_size=0", "data.batch_size=0: must be an integer >= 1."),
        ("scale=abc", "scale=abc: must be an integer >= 1."),
        ("channels=2", "channels=2: must be 1 or 3."),
        ("model.optimizer.lr=-1", "model.optimizer.lr=-1: must be a number > 0 or null."),
        ("model.optimizer.lr=abc", "model.optimizer.lr=abc: must be a number > 0 or null."),
        ("trainer.max_epochs=ten", "trainer.max_epochs=ten: must be an integer >= -1 or null."),
        ("trainer.max_steps=-5", "trainer.max_steps=-5: must be an integer >= -1."),
        ("data.cache=rma", "data.cache=rma: must be one of auto, ram, disk, none."),
        ("loss.pixel.kind=l2", "loss.pixel.kind=l2: must be one of mse, l1, charbonnier."),
        (
            "model.scheduler.milestones=[0.5,1.5]",
            "model.scheduler.milestones[1]=1.5: must be a number > 0 and < 1.",
        ),
        ("+model.last_layer_lr_mul=0.1", "did you mean model.last_layer_lr_mult?"),
        ("+data.patches_per_imag=2", "did you mean data.patches_per_image?"),
        ("+loss.pixel.weigth=2", "did you mean loss.pixel.weight?"),
        ("degradation.name=bx", "degradation.name=bx: must be one of bicubic, bd, dn, realesrgan."),
        ("+degradation.sigma=-1", "degradation.sigma=-1: must be a number >= 0 or null."),
        ("+degradation.eval_sed=1", "did you mean degradation.eval_seed?"),
    ],
)
def test_a_bad_value_names_the_key_the_value_and_what_is_allowed(compose_train, override, expected):
    with pytest.raises(ConfigError) as info:
        check_config(compose_train(override), "train")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["degradation=realesrgan", "+degradation.options.jpeg_rang=[30,95]"],
            "did you mean degradation.options.jpeg_range?",
        ),
        (
            ["degradation=realesrgan", "degradation.options.sinc_prob=1.5"],
            "degradation.options.sinc_prob=1.5: must be a number >= 0 and <= 1 or null.",
        ),
        (
            ["degradation=realesrgan", "degradation.options.kernel_list=[iso,gauss]"],
            "degradation.options.kernel_list[1]=gauss: must be one of iso, aniso,",
        ),
        (["+degradation.eval_seed=abc"], "degradation.eval_seed=abc: must be an integer."),
        (
            ["degradation=bd", "+degradation.options.jpeg_range=[30,95]"],
            "degradation.options are Real-ESRGAN's; degradation.name=bd takes none",
        ),
    ],
)
def test_the_degradation_group_is_checked(compose_train, overrides, expected):
    """Every shipped degradation passes (GROUPS); its keys and Real-ESRGAN's options are typed."""
    with pytest.raises(ConfigError) as info:
        check_config(compose_train(*overrides), "train")
    assert expected in str(info.value)


def test_a_value_copied_by_interpolation_is_reported_once_at_its_source(compose_train):
    """scale reaches the module, its net and the data module (in code, core/derived.py; no
    group copies it): one line, about scale."""
    with pytest.raises(ConfigError) as info:
        check_config(compose_train("scale=0"), "train")
    assert str(info.value) == "scale=0: must be an integer >= 1."


def test_several_bad_values_are_listed_together(compose_train):
    with pytest.raises(ConfigError) as info:
        check_config(compose_train("seed=abc", "data.num_workers=-1"), "train")
    lines = str(info.value).splitlines()
    assert lines[0] == "2 config values cannot work:"
    assert sorted(lines[1:]) == [
        "- data.num_workers=-1: must be an integer >= 0.",
        "- seed=abc: must be an integer >= 0 and <= 4294967295 or null.",
    ]


def test_open_sections_take_extra_keys_but_check_the_documented_ones(compose_train):
    """model.net, model.optimizer, callbacks and loggers go to a class of the user's choice."""
    cfg = compose_train(
        "+model.net.my_width=8", "+model.optimizer.amsgrad=true", "+callbacks.mine._target_=x.Y"
    )
    check_config(cfg, "train")
    with pytest.raises(ConfigError, match=r"model\.optimizer\.weight_decay=-0\.1: must be"):
        check_config(compose_train("+model.optimizer.weight_decay=-0.1"), "train")


def test_a_loss_of_your_own_is_an_open_section(compose_train):
    cfg = compose_train()
    with open_dict(cfg):
        cfg.loss = {"_target_": "mylosses.Edge", "alpha": 0.5}
    check_config(cfg, "train")
    with open_dict(cfg):
        cfg.loss = {"pixel": {"kind": "l1", "weight": 1.0}, "alpha": 0.5}
    with pytest.raises(ConfigError, match=r"loss\.alpha: no such key"):
        check_config(cfg, "train")


def test_a_module_of_your_own_takes_its_own_keys(compose_train):
    cfg = compose_train()
    with open_dict(cfg):
        cfg.model._target_ = "mymodules.MyModule"
        cfg.model.my_setting = 3
    check_config(cfg, "train")
    with open_dict(cfg):
        cfg.model._target_ = "sr_lightning.modules.espcn.ESPCNModule"
    with pytest.raises(ConfigError, match=r"model\.my_setting: no such key"):
        check_config(cfg, "train")


def test_describe_says_what_a_key_allows():
    fields = SCHEMAS["upscale"].model_fields
    assert describe(fields["tile"].annotation) == "an integer >= 0 or auto"
    assert "| `data.batch_size` | an integer >= 1 |" in markdown("train")


# -- the console scripts ---------------------------------------------------------------------

# the cases of scripts/bench_startup.py, and the key each error must name
BENCH_CASES = [
    ("data.batch_size=0", "data.batch_size=0"),
    ("scale=abc", "scale=abc"),
    ("model.optimizer.lr=-1", "model.optimizer.lr=-1"),
    ("model.optimizer.lr=abc", "model.optimizer.lr=abc"),
    ("trainer.max_epochs=ten", "trainer.max_epochs=ten"),
    ("trainer.max_steps=-5", "trainer.max_steps=-5"),
    ("seed=abc", "seed=abc"),
    ("+data.blur_sigma=1.6", "data.blur_sigma: no such key"),
]


def check_block(out: subprocess.CompletedProcess, prog: str, named: str) -> None:
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) <= 25, lines
    assert lines[0].startswith(f"{prog}: error: ")
    assert named in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(("override", "named"), BENCH_CASES)
def test_sr_train_refuses_a_bad_value_in_one_short_block(tmp_path, override, named):
    out = run("sr-train", override, cwd=tmp_path)
    check_block(out, "sr-train", named)
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("*.log")), (
        "a run refused at start-up leaves no run dir"
    )


@pytest.mark.parametrize(
    ("prog", "args", "named"),
    [
        ("sr-train", ["+trainer.max_step=3"], "did you mean trainer.max_steps?"),
        ("sr-train", ["model.patch_size=24"], "model.patch_size: moved; the training patch"),
        ("sr-eval", ["model=bicubic", "scale=2", "tile=-1"], "tile=-1: must be"),
        ("sr-eval", ["model=bicubic", "scale=2", "+tta_=true"], "did you mean tta?"),
        (
            "sr-eval",
            ["model=bicubic", "scale=2", "degradation=dn", "+degradation.sigma_=30"],
            "did you mean degradation.sigma?",
        ),
        ("sr-upscale", ["input=a.png", "output=o", "precision=fp8"], "precision=fp8: must be"),
        ("sr-upscale", ["input=a.png", "output=o", "+ovewrite=true"], "did you mean overwrite?"),
        ("sr-export", ["ckpt_path=x.ckpt", "opset=11"], "opset=11: must be an integer >= 17"),
        ("sr-export", ["ckpt_path=x.ckpt", "+fromat=onnx"], "did you mean format?"),
    ],
)
def test_every_app_refuses_a_bad_key_in_one_short_block(tmp_path, prog, args, named):
    check_block(run(prog, *args, cwd=tmp_path), prog, named)


def test_hydra_full_error_keeps_the_traceback(tmp_path):
    out = run("sr-train", "data.batch_size=0", cwd=tmp_path, HYDRA_FULL_ERROR="1")
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "ConfigError" in out.stderr
    assert "data.batch_size=0: must be an integer >= 1." in out.stderr


@pytest.mark.parametrize("app", sorted(REFERENCE_DOCS))
def test_each_apps_config_reference_in_docs_is_the_schemas(app):
    """docs/training.md, evaluation.md and inference.md hold `python -m
    sr_lightning.runtime.schema <app>`'s table between their schema:<app> markers."""
    text = (Path(__file__).resolve().parents[1] / REFERENCE_DOCS[app]).read_text()
    begin, end = f"<!-- schema:{app} -->\n", f"\n<!-- /schema:{app} -->"
    table = text[text.index(begin) + len(begin) : text.index(end)]
    assert table == markdown(app), "regenerate: python -m sr_lightning.runtime.schema --write"


def test_the_writer_replaces_only_the_table_between_an_apps_markers():
    doc = "intro\n<!-- schema:export -->\n| stale |\n<!-- /schema:export -->\nafter\n"
    new = with_reference(doc, "export")
    assert new.startswith("intro\n<!-- schema:export -->\n| key | allowed | what it is |\n")
    assert new.endswith(
        "| `overwrite` | true or false | replace an existing output |\n"
        "<!-- /schema:export -->\nafter\n"
    )
    assert "stale" not in new and with_reference(new, "export") == new


def test_the_other_apps_tables_give_sr_trains_sections_one_row():
    keys = {app: [row.split("`")[1] for row in markdown(app).splitlines()[2:]] for app in SCHEMAS}
    assert "data.batch_size" in keys["train"] and "model.patch_lr" in keys["train"]
    assert {"data", "trainer", "model", "tile", "degradation.name"} <= set(keys["eval"])
    assert not [k for k in keys["eval"] if k.startswith(("data.", "model.", "trainer."))]
    assert {"opset", "format", "model"} <= set(keys["export"])
    assert "input" in keys["upscale"] and "video.codec" in keys["upscale"]
