"""sr-report: gathering run dirs into the markdown table and the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from sr_lightning.apps.report import find_runs, main
from sr_lightning.core.published import load_published, published


def fake_run(
    root: Path, name: str, results: dict, info: dict | None = None, hydra: str = ""
) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(results))
    if info is not None:
        (run / "run_info.json").write_text(json.dumps(info))
    if hydra:
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text(hydra)
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A multirun dir: an ESPCN run (with run_info.json) and a bicubic run (config only)."""
    root = tmp_path / "multirun"
    fake_run(
        root,
        "0",
        {
            "Set5": {"psnr_y": 32.512345, "ssim_y": 0.908123, "images": 5},
            "Set14": {"psnr_y": 29.016, "ssim_y": 0.82, "images": 14},
        },
        {
            "method": "espcn",
            "scale": 3,
            "channels": 1,
            "params": 22729,
            "tta": False,
            "device": "cpu (1 thread)",
            "ms_per_image": {"Set5": 20.0, "Set14": 40.0},
            "bicubic": {"Set5": {"psnr_y": 30.39, "ssim_y": 0.8682}},
        },
    )
    fake_run(
        root,
        "1",
        {"Set5": {"psnr_y": 30.3922, "ssim_y": 0.86821, "images": 5}},
        hydra="model:\n  method: bicubic\nscale: 3\nchannels: 1\ntta: false\n",
    )
    (root / "notes").mkdir()
    (root / "notes" / "results.json").write_text(json.dumps({"accuracy": 0.9}))  # not ours
    return root


def test_runs_are_found_recursively_with_their_metadata(sweep):
    runs = find_runs([sweep])
    assert [(r.method, r.scale, r.params, r.label) for r in runs] == [
        ("bicubic", 3, None, "1"),
        ("espcn", 3, 22729, "0"),
    ]


def test_report_table_and_figures(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    lines = md.splitlines()
    assert "## ×3" in lines
    header = next(line for line in lines if line.startswith("| method"))
    assert header == "| method | source | params | Set5 | Set14 | ms/img | run |"
    # the time column is the image-weighted mean: (5·20 + 14·40) / 19
    assert "| ESPCN | ours | 22.7 k | 32.51 / 0.9081 | 29.02 / 0.8200 | 34.7 | 0 |" in lines
    assert "| Bicubic | ours | – | 30.39 / 0.8682 | – | – | 1 |" in lines
    # the papers' rows at the same scale and sets
    assert "| ESPCN | paper (ESPCN) | 22.7 k | 32.55 / – | 29.08 / – | – | |" in lines
    assert "| VDSR | paper (VDSR) | 665.9 k | 33.66 / 0.9213 | 29.77 / 0.8314 | – | |" in lines
    assert not any("SRResNet" in line for line in lines)  # x4 only
    for name in ("psnr_vs_params_x3.png", "psnr_vs_time_x3.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 800 and im.height > 300
        assert f"]({name})" in md
    assert "wrote" in capsys.readouterr().out


def test_default_output_dir_and_no_runs(sweep, tmp_path, capsys):
    assert main([str(sweep), "--no-published"]) == 0
    md = (sweep / "report" / "report.md").read_text()
    assert "paper" not in md.split("## ×3")[1]
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no sr-eval results.json" in capsys.readouterr().err


def test_published_table_matches_the_papers():
    rows = load_published()
    cells = [(r.method, r.set, r.scale, r.source, r.degradation) for r in rows]
    assert len(cells) == len(set(cells)), "one value per paper, method, set, scale and LR"
    # DN's noisy bicubic LR scores SSIM 0.47 on Set14 (RDN's Table 3)
    assert all(20 < r.psnr < 45 and (r.ssim is None or 0.4 < r.ssim < 1) for r in rows)
    (vdsr,) = published("vdsr", "Set5", 2)
    assert (vdsr.psnr, vdsr.ssim, vdsr.params, vdsr.source) == (37.53, 0.9587, 665921, "VDSR")
    (espcn,) = published("ESPCN", "Set14", 3)
    assert (espcn.psnr, espcn.ssim) == (29.08, None)
    assert {r.method for r in published(scale=4, set="Set5")} >= {"SRResNet", "SRGAN", "bicubic"}


def test_published_csv_of_the_user(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "# my lab\nmethod,set,scale,psnr,ssim,params,source\nFSRCNN,Set5,3,33.06,,12464,FSRCNN\n"
    )
    (row,) = load_published(path)
    assert (row.method, row.scale, row.psnr, row.params) == ("FSRCNN", 3, 33.06, 12464)
    path.write_text("method,set,psnr\nX,Set5,1\n")
    with pytest.raises(ValueError, match="missing column"):
        load_published(path)


def test_bd_and_dn_runs_sit_beside_the_rows_of_their_setting(sweep, tmp_path):
    """A published row carries its LR setting (no column: bicubic); a run its degradation
    (run_info.json, else the saved config); the report groups them by scale and setting."""
    csv = tmp_path / "mine.csv"
    csv.write_text(
        "method,set,scale,psnr,ssim,params,source,degradation\n"
        "Mine,Set5,3,31.00,0.9000,100,LAB,BI\n"
        "Mine,Set5,3,30.00,0.8800,100,LAB,bd\n"
        "Mine,Set5,3,27.00,0.7500,100,LAB,DN\n"
    )
    assert [r.degradation for r in load_published(csv)] == ["bicubic", "bd", "dn"]
    info = {"method": "espcn", "scale": 3, "params": 22729, "degradation": "bd"}
    fake_run(sweep, "bd", {"Set5": {"psnr_y": 29.5, "ssim_y": 0.85, "images": 5}}, info)
    hydra = "model:\n  method: espcn\nscale: 3\ndegradation:\n  name: dn\n"
    fake_run(sweep, "dn", {"Set5": {"psnr_y": 26.5, "ssim_y": 0.7, "images": 5}}, hydra=hydra)
    out = tmp_path / "report"
    assert main([str(sweep), "--published", str(csv), "--out", str(out)]) == 0
    sections = {}
    for block in (out / "report.md").read_text().split("\n## ")[1:]:
        title, _, body = block.partition("\n")
        sections[title] = body
    assert list(sections) == ["×3", "×3, BD", "×3, DN"]
    assert "| Mine | paper (LAB) | 100 | 31.00 / 0.9000 |" in sections["×3"]
    assert "| ESPCN | ours | 22.7 k | 29.50 / 0.8500 | – | bd |" in sections["×3, BD"]
    assert "30.00 / 0.8800" in sections["×3, BD"] and "31.00" not in sections["×3, BD"]
    assert "26.50 / 0.7000" in sections["×3, DN"] and "27.00 / 0.7500" in sections["×3, DN"]
    assert "29.50" not in sections["×3"] + sections["×3, DN"]
    assert (out / "psnr_vs_params_x3_bd.png").is_file()
    assert (out / "psnr_vs_params_x3_dn.png").is_file()
    with pytest.raises(ValueError, match="degradation 'blur' is not one of"):
        csv.write_text(
            "method,set,scale,psnr,ssim,params,source,degradation\nM,Set5,3,1,,,L,blur\n"
        )
        load_published(csv)


def test_perceptual_columns_and_the_perception_distortion_figure(tmp_path, capsys):
    root = tmp_path / "runs"
    scores = {"Set5": (28.42, 0.34, 0.22), "Set14": (26.0, 0.44, 0.24)}
    bicubic = {
        s: {"psnr_y": p, "ssim_y": 0.8, "lpips": lp, "dists": d} for s, (p, lp, d) in scores.items()
    }
    info = {"method": "srgan", "scale": 4, "channels": 3, "params": 1547000, "lpips_net": "alex"}
    fake_run(
        root,
        "srgan",
        {
            "Set5": {"psnr_y": 29.6, "ssim_y": 0.85, "lpips": 0.0812, "dists": 0.1034, "images": 5},
            "Set14": {"psnr_y": 26.3, "ssim_y": 0.71, "lpips": 0.15, "dists": 0.11, "images": 14},
        },
        {**info, "bicubic": bicubic},
    )
    fake_run(
        root,
        "srresnet",
        {"Set5": {"psnr_y": 31.9, "ssim_y": 0.89, "lpips": 0.17, "dists": 0.14, "images": 5}},
        {**info, "method": "srresnet"},
    )
    out = tmp_path / "report"
    assert main([str(root), "--out", str(out)]) == 0
    lines = (out / "report.md").read_text().splitlines()
    assert "### ×4: LPIPS / DISTS (lower is better)" in lines
    assert "| SRGAN | 0.0812 / 0.1034 | 0.1500 / 0.1100 | srgan |" in lines
    assert "| SRResNet | 0.1700 / 0.1400 | – | srresnet |" in lines
    # no bicubic run: the bicubic of the same LR images, from the SRGAN run
    assert "| Bicubic | 0.3400 / 0.2200 | 0.4400 / 0.2400 | srgan (bicubic) |" in lines
    figure = out / "perception_distortion_x4.png"
    with Image.open(figure) as im:
        assert im.format == "PNG" and im.width > 1000 and im.height > 400  # two panels
    assert f"]({figure.name})" in "\n".join(lines)


def test_no_perception_figure_without_lpips(sweep, tmp_path):
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out)]) == 0
    assert not list(out.glob("perception_distortion_*.png"))
    assert "LPIPS" not in (out / "report.md").read_text()
