"""scripts/time_to_quality.py: the fp32 and bf16 pairs, their columns, and resuming by pair."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from scripts import time_to_quality as ttq

MACHINE = {"cpu": "test CPU", "cores": 2, "torch": "2.x", "python": "3.x"}


def run(steps: int, set5: float) -> dict:
    return {"steps": steps, "set5": set5, "set14": set5 - 3}


def pair(precision: str, steps: int, set5: float, load: float) -> dict:
    sfx = ttq.PRECISIONS[precision][2]
    return {
        f"load_before{sfx}": [load, 0, 0],
        f"load_after{sfx}": [load + 0.5, 0, 0],
        f"started{sfx}": "2026-12-07 01:00 UTC",
        f"sr_train{sfx}": run(steps, set5),
        f"plain{sfx}": run(steps - 100, set5 - 0.1),
    }


def table(md: str) -> list[dict[str, str]]:
    """The markdown table as rows of {header: cell}; repeated headers get a running index."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    header = [f"{h}#{header[:i].count(h)}" for i, h in enumerate(header)]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def test_bf16_columns_hold_the_bf16_pair_and_dashes_where_it_was_not_run():
    results = {
        "experiment": "espcn_x3",
        "machine": MACHINE,
        "budgets": {
            "2": {"minutes": 2.0, **pair("fp32", 1000, 31.5, 1.0), **pair("bf16", 1500, 31.8, 1.2)},
            "4": {"minutes": 4.0, **pair("fp32", 2000, 31.9, 0.8)},
        },
    }
    rows = table(ttq.markdown(results, ttq.ROOT / "docs" / "figures" / "x.png"))
    two, four = rows
    assert two["sr-train steps#0"] == "1,000" and two["sr-train Set5#0"] == "**31.50**"
    assert two["plain steps#0"] == "900" and two["plain Set5#0"] == "31.40"
    assert two["bf16 sr-train steps#0"] == "1,500" and two["bf16 sr-train Set5#0"] == "**31.80**"
    assert two["bf16 plain steps#0"] == "1,400" and two["bf16 plain Set5#0"] == "31.70"
    assert [two[f"Set14#{i}"] for i in range(4)] == ["28.50", "28.40", "28.80", "28.70"]
    assert two["load#0"] == "fp32 1.0 -> 1.5; bf16 1.2 -> 1.7"
    assert four["bf16 sr-train steps#0"] == four["bf16 plain Set5#0"] == "–"
    assert four["sr-train Set5#0"] == "**31.90**" and four["load#0"] == "fp32 0.8 -> 1.3"


def test_an_fp32_only_table_has_no_bf16_columns():
    results = {
        "experiment": "srcnn_x3_cpu",
        "machine": MACHINE,
        "budgets": {"2": {"minutes": 2.0, **pair("fp32", 1000, 31.5, 1.0)}},
    }
    (row,) = table(ttq.markdown(results, ttq.ROOT / "docs" / "figures" / "x.png"))
    assert not any("bf16" in key for key in row) and row["load#0"] == "1.0 -> 1.5"


def test_a_budget_run_without_the_plain_loop_keeps_the_loop_in_the_description():
    alone = pair("bf16", 3000, 32.0, 1.0)
    del alone["plain_bf16"]
    results = {
        "experiment": "espcn_x2",
        "machine": MACHINE,
        "budgets": {
            "2": {"minutes": 2.0, **pair("bf16", 1500, 31.8, 1.2)},
            "30": {"minutes": 30.0, **alone},
        },
    }
    md = ttq.markdown(results, ttq.ROOT / "docs" / "figures" / "x.png")
    assert "and the plain PyTorch loop" in md and "sr-train ran alone" in md
    two, thirty = table(md)
    assert two["bf16 plain Set5#0"] == "31.70" and thirty["bf16 plain Set5#0"] == "–"
    del results["budgets"]["2"]
    md = ttq.markdown(results, ttq.ROOT / "docs" / "figures" / "x.png")
    assert "plain PyTorch loop" not in md and "trained for each budget on one torch thread" in md


def test_a_rerun_measures_only_the_missing_pairs(tmp_path, monkeypatch):
    store = tmp_path / "ttq.json"
    store.write_text(
        json.dumps(
            {
                "experiment": "espcn_x3",
                "machine": MACHINE,
                "budgets": {"2": {"minutes": 2.0, **pair("fp32", 1000, 31.5, 1.0)}},
            }
        )
    )
    calls = []

    def fake_pair(args, minutes, precision):
        calls.append((minutes, precision))
        return pair(precision, 7, 30.0, 0.1)

    monkeypatch.setattr(ttq, "run_pair", fake_pair)
    argv = ["ttq", "--budgets", "2,4", "--json", str(store), "--md", str(tmp_path / "b.md")]
    monkeypatch.setattr(sys, "argv", [*argv, "--figure", str(tmp_path / "f.png")])
    ttq.main()
    assert calls == [(2.0, "bf16"), (4.0, "fp32"), (4.0, "bf16")]
    saved = json.loads(store.read_text())
    assert saved["budgets"]["2"]["sr_train"] == run(1000, 31.5)  # kept, not remeasured
    assert saved["budgets"]["2"]["sr_train_bf16"] == run(7, 30.0)
    assert saved["threads"] == 1 and Path(tmp_path / "f.png").is_file()
    assert "bf16 sr-train Set5" in (tmp_path / "b.md").read_text()


def test_docs_only_rewrites_table_and_figure_without_training(tmp_path, monkeypatch):
    """Regenerating the docs from a store with gaps (here: no bf16 run, two threads) must not
    start the missing runs, nor restamp the store's machine."""
    stored = {
        "experiment": "espcn_x3",
        "machine": MACHINE,
        "threads": 2,
        "budgets": {"2": {"minutes": 2.0, **pair("fp32", 1000, 31.5, 1.0)}},
    }
    store = tmp_path / "ttq.json"
    store.write_text(json.dumps(stored))
    md = tmp_path / "b.md"
    md.write_text("before\n")

    def no_training(*_):
        raise AssertionError("--docs-only trained")

    monkeypatch.setattr(ttq, "run_pair", no_training)
    argv = ["ttq", "--docs-only", "--json", str(store), "--md", str(md)]
    monkeypatch.setattr(sys, "argv", [*argv, "--figure", str(tmp_path / "f.png")])
    ttq.main()
    assert json.loads(store.read_text()) == stored
    assert (tmp_path / "f.png").is_file() and md.read_text().startswith("before\n")
    rows = table(md.read_text())
    assert [r["sr-train Set5#0"] for r in rows] == ["**31.50**"]
    monkeypatch.setattr(sys, "argv", [*argv[:3], str(tmp_path / "none.json")])
    with pytest.raises(SystemExit, match=r"none\.json holds no measured budget"):
        ttq.main()


def test_a_store_measured_with_other_threads_is_refused(tmp_path, monkeypatch):
    store = tmp_path / "ttq.json"
    store.write_text(
        json.dumps(
            {"experiment": "espcn_x3", "budgets": {"2": {"minutes": 2.0, **pair("fp32", 1, 30, 1)}}}
        )
    )
    monkeypatch.setattr(sys, "argv", ["ttq", "--json", str(store), "--threads", "2"])
    with pytest.raises(SystemExit, match="measured with 1 thread"):
        ttq.main()


def test_a_multi_scale_model_gets_set5_and_set14_at_each_scale_and_the_papers_line():
    by_scale = {f"x{s}": {"set5": 30.0 + s, "set14": 27.0 + s} for s in (2, 3, 4)}
    results = {
        "experiment": "vdsr_cpu",
        "machine": MACHINE,
        "budgets": {
            "30": {
                "minutes": 30.0,
                "load_before_bf16": [2.0, 0, 0],
                "load_after_bf16": [2.1, 0, 0],
                "sr_train_bf16": {"steps": 3000, **by_scale},
            }
        },
    }
    md = ttq.markdown(results, ttq.ROOT / "docs" / "figures" / "x.png")
    (row,) = table(md)
    assert row["bf16 sr-train steps#0"] == "3,000"
    assert [row[f"bf16 sr-train Set5 x{s}#0"] for s in (2, 3, 4)] == [
        "**32.00**",
        "**33.00**",
        "**34.00**",
    ]
    assert [row[f"Set14 x{s}#0"] for s in (2, 3, 4)] == ["29.00", "30.00", "31.00"]
    assert not any("plain" in key for key in row)  # no plain loop was run for it
    # VDSR's Table 3 (Kim et al., CVPR'16), Set5: VDSR 37.53 / 31.35 at x2 / x4, the goal SRCNN
    # 36.66 / 30.48, bicubic 33.66 / 28.42
    assert "Set5 x2: VDSR 37.53 dB, SRCNN 36.66 dB, bicubic 33.66 dB" in md
    assert "Set5 x4: VDSR 31.35 dB, SRCNN 30.48 dB, bicubic 28.42 dB" in md


@pytest.mark.parametrize(
    ("experiment", "scales"),
    [("espcn_x2", [2]), ("srcnn_x4_cpu", [4]), ("espcn_x3_bd", [3]), ("vdsr_cpu", [2, 3, 4])],
)
def test_an_experiment_is_scored_at_its_name_s_scale_or_at_every_scale(experiment, scales):
    assert ttq.scales_of(experiment) == scales


def test_plain_only_adds_the_loop_beside_sr_train_runs_stored_without_it(tmp_path, monkeypatch):
    """--plain-only fills the plain column of a budget measured with --no-plain, keeps that
    sr-train run and its pair's load, skips budgets with no sr-train run to stand beside, and
    the docs say the loop ran apart."""
    alone = pair("bf16", 5000, 36.7, 2.0)
    del alone["plain_bf16"]
    stored = {"experiment": "espcn_x2", "machine": MACHINE, "threads": 1}
    stored["budgets"] = {"30": {"minutes": 30.0, **alone}}
    store = tmp_path / "ttq.json"
    store.write_text(json.dumps(stored))
    started = []

    class Finished:
        def wait(self):
            return 0

    def fake_plain(minutes, out, data_dir, precision, threads, scale):
        started.append((minutes, precision, threads, scale, out.name))
        out.write_text(json.dumps(run(4200, 36.6)))
        return Finished()

    monkeypatch.setattr(ttq, "start_plain", fake_plain)
    monkeypatch.setattr(ttq, "run_pair", lambda *_: pytest.fail("--plain-only ran sr-train"))
    md = tmp_path / "b.md"
    argv = ["ttq", "--experiment", "espcn_x2", "--plain-only", "--precisions", "bf16"]
    argv += ["--budgets", "2,30", "--json", str(store), "--md", str(md), "--runs", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--figure", str(tmp_path / "f.png")])
    ttq.main()
    # 2 min has no sr-train run: nothing started; the file names the experiment, since x2 and
    # x4 loops of one budget may run at once
    assert started == [(30.0, "bf16", 1, 2, "espcn_x2_plain_30min_bf16.json")]
    saved = json.loads(store.read_text())
    assert list(saved["budgets"]) == ["30"]
    thirty = saved["budgets"]["30"]
    assert thirty["sr_train_bf16"] == run(5000, 36.7) and thirty["load_before_bf16"][0] == 2.0
    assert thirty["plain_bf16"]["steps"] == 4200 and "started" in thirty["plain_bf16"]
    row = table(md.read_text())[0]
    assert row["bf16 plain steps#0"] == "4,200" and row["bf16 plain Set5#0"] == "36.60"
    assert "The plain loop ran apart from sr-train at 30 min bf16" in md.read_text()
    ttq.main()  # a second call finds the loop measured
    assert len(started) == 1


def test_plain_only_on_a_store_without_sr_train_runs_says_so_and_writes_no_table(
    tmp_path, monkeypatch
):
    md = tmp_path / "b.md"
    md.write_text("before\n")
    monkeypatch.setattr(ttq, "start_plain", lambda *_: pytest.fail("a loop with nothing beside"))
    argv = ["ttq", "--plain-only", "--budgets", "30", "--json", str(tmp_path / "new.json")]
    monkeypatch.setattr(sys, "argv", [*argv, "--md", str(md), "--runs", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"new\.json holds no sr-train run.*without --plain-only"):
        ttq.main()
    assert md.read_text() == "before\n" and not (tmp_path / "new.json").exists()


def test_a_failed_plain_loop_names_its_log(tmp_path):
    failing = ttq.subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    log = tmp_path / "espcn_x2_plain_30min_bf16.log"
    with pytest.raises(SystemExit, match=r"plain failed for 30 min; see .*plain_30min_bf16\.log"):
        ttq.wait(failing, "plain", 30.0, log)


def test_plain_only_and_no_plain_are_refused_together(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ttq", "--plain-only", "--no-plain"])
    with pytest.raises(SystemExit, match="exclude each other"):
        ttq.main()


def test_a_redo_trains_in_a_fresh_run_dir_and_keeps_the_earlier_run(tmp_path):
    """sr-eval will not overwrite an earlier results.json, and old checkpoints must not mix
    with the new run's: the earlier dir and log are renamed, not deleted."""
    run_dir = tmp_path / "espcn_x2_30min_bf16"
    (run_dir / "eval").mkdir(parents=True)
    (run_dir / "eval" / "results.json").write_text("{}")
    run_dir.with_suffix(".log").write_text("old log")
    ttq.set_aside(run_dir)
    assert not run_dir.exists() and not run_dir.with_suffix(".log").exists()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert len(kept) == 2 and all(n.startswith("espcn_x2_30min_bf16.before-") for n in kept)
    old = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert (old / "eval" / "results.json").read_text() == "{}"
    assert next(p for p in tmp_path.iterdir() if p.suffix == ".log").read_text() == "old log"
    ttq.set_aside(run_dir)  # nothing there: nothing to do
    assert len(list(tmp_path.iterdir())) == 2
