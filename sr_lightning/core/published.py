"""Reference numbers from the papers' tables, for reports and figures.

The values are facts copied from the publications (Y-channel PSNR in dB / SSIM, border
crop = scale, MATLAB bicubic LR): VDSR (Kim et al., CVPR'16, Table 3, which also
re-evaluates SRCNN and bicubic), SRCNN (Dong et al., ECCV'14, 9-1-5 on 91 images), ESPCN
(Shi et al., CVPR'16, 91 images), SRGAN (Ledig et al., CVPR'17, Table 2; ×4, computed
with a 4-pixel crop) and EDSR (Lim et al., CVPRW'17, Table 3, without self-ensemble; trained
on DIV2K, parameters counted per scale). ``params`` is the generator's parameter count.

They are kept here as CSV text so that an installed package always has them; a CSV of the
same columns can be read with :func:`load_published` too.

Each row holds a ``degradation``: the LR setting of its table, ``bicubic`` (BI, every row
above) or ``bd`` / ``dn`` (RDN's, ``degradation=``); a CSV without that column is bicubic.
``sr-report`` sets a run beside the rows of its own setting only.

The BD / DN rows (:data:`DEGRADED_CSV`, source ``RDN``) are RDN's (Zhang et al., CVPR'18,
Table 3: BD and DN, ×3; bicubic, SRCNN and RDN on Set5 and Set14). The text they were read
from is a verbatim reprint of that table with its caption (a 2024 course blog post, UCLA
CS 163, team 39), not the paper itself. Cross-checks: ``sr-eval model=bicubic channels=1``
(bicubic of the degraded LR's luma) gives BD Set5 28.78 / 0.8309 and Set14 26.38 / 0.7270,
DN 24.05 and 22.87 (its own noise draw); RDN's Set5 cells agree to 0.01 dB with the
authors' result files (``RDN_TestCode/PSNR_SSIM_Results_{BD,DN}_model.txt`` in
yulunzhang/RDN: 34.57 / 0.9280 and 28.47 / 0.8151). The SRCNN cells rest on the reprint.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("method", "set", "scale", "psnr", "ssim", "params", "source")
# the LR settings a row may name (conf/degradation/); BI is bicubic's name in RDN's tables
DEGRADATIONS = ("bicubic", "bd", "dn", "realesrgan")
_ALIASES = {"bi": "bicubic"}

PUBLISHED_CSV = """\
method,set,scale,psnr,ssim,params,source
bicubic,Set5,2,33.66,0.9299,0,VDSR
bicubic,Set5,3,30.39,0.8682,0,VDSR
bicubic,Set5,4,28.42,0.8104,0,VDSR
bicubic,Set14,2,30.24,0.8688,0,VDSR
bicubic,Set14,3,27.55,0.7742,0,VDSR
bicubic,Set14,4,26.00,0.7027,0,VDSR
bicubic,BSD100,2,29.56,0.8431,0,VDSR
bicubic,BSD100,3,27.21,0.7385,0,VDSR
bicubic,BSD100,4,25.96,0.6675,0,VDSR
bicubic,Urban100,2,26.88,0.8403,0,VDSR
bicubic,Urban100,3,24.46,0.7349,0,VDSR
bicubic,Urban100,4,23.14,0.6577,0,VDSR
SRCNN,Set5,2,36.66,0.9542,57281,VDSR
SRCNN,Set5,3,32.75,0.9090,57281,VDSR
SRCNN,Set5,4,30.48,0.8628,57281,VDSR
SRCNN,Set14,2,32.42,0.9063,57281,VDSR
SRCNN,Set14,3,29.28,0.8209,57281,VDSR
SRCNN,Set14,4,27.49,0.7503,57281,VDSR
SRCNN,BSD100,2,31.36,0.8879,57281,VDSR
SRCNN,BSD100,3,28.41,0.7863,57281,VDSR
SRCNN,BSD100,4,26.90,0.7101,57281,VDSR
SRCNN,Urban100,2,29.50,0.8946,57281,VDSR
SRCNN,Urban100,3,26.24,0.7989,57281,VDSR
SRCNN,Urban100,4,24.52,0.7221,57281,VDSR
SRCNN-915,Set5,2,36.34,,8129,SRCNN-ECCV
SRCNN-915,Set5,3,32.39,,8129,SRCNN-ECCV
SRCNN-915,Set5,4,30.09,,8129,SRCNN-ECCV
ESPCN,Set5,3,32.55,,22729,ESPCN
ESPCN,Set14,3,29.08,,22729,ESPCN
VDSR,Set5,2,37.53,0.9587,665921,VDSR
VDSR,Set5,3,33.66,0.9213,665921,VDSR
VDSR,Set5,4,31.35,0.8838,665921,VDSR
VDSR,Set14,2,33.03,0.9124,665921,VDSR
VDSR,Set14,3,29.77,0.8314,665921,VDSR
VDSR,Set14,4,28.01,0.7674,665921,VDSR
VDSR,BSD100,2,31.90,0.8960,665921,VDSR
VDSR,BSD100,3,28.82,0.7976,665921,VDSR
VDSR,BSD100,4,27.29,0.7251,665921,VDSR
VDSR,Urban100,2,30.76,0.9140,665921,VDSR
VDSR,Urban100,3,27.14,0.8279,665921,VDSR
VDSR,Urban100,4,25.18,0.7524,665921,VDSR
SRResNet,Set5,4,32.05,0.9019,1550000,SRGAN
SRResNet,Set14,4,28.49,0.8184,1550000,SRGAN
SRResNet,BSD100,4,27.58,0.7620,1550000,SRGAN
SRGAN,Set5,4,29.40,0.8472,1550000,SRGAN
SRGAN,Set14,4,26.02,0.7397,1550000,SRGAN
SRGAN,BSD100,4,25.16,0.6688,1550000,SRGAN
EDSR,Set5,2,38.11,0.9601,40729603,EDSR
EDSR,Set5,3,34.65,0.9282,43680003,EDSR
EDSR,Set5,4,32.46,0.8968,43089923,EDSR
EDSR,Set14,2,33.92,0.9195,40729603,EDSR
EDSR,Set14,3,30.52,0.8462,43680003,EDSR
EDSR,Set14,4,28.80,0.7876,43089923,EDSR
EDSR,BSD100,2,32.32,0.9013,40729603,EDSR
EDSR,BSD100,3,29.25,0.8093,43680003,EDSR
EDSR,BSD100,4,27.71,0.7420,43089923,EDSR
EDSR,Urban100,2,32.93,0.9351,40729603,EDSR
EDSR,Urban100,3,28.80,0.8653,43680003,EDSR
EDSR,Urban100,4,26.64,0.8033,43089923,EDSR
"""

# RDN, CVPR'18, Table 3 (×3): BD = 7×7 Gaussian blur (σ 1.6) then every 3rd pixel;
# DN = bicubic then noise σ 30. SRCNN's parameter count is not given there.
DEGRADED_CSV = """\
method,set,scale,psnr,ssim,params,source,degradation
bicubic,Set5,3,28.78,0.8308,0,RDN,bd
bicubic,Set14,3,26.38,0.7271,0,RDN,bd
SRCNN,Set5,3,32.05,0.8944,,RDN,bd
SRCNN,Set14,3,28.80,0.8074,,RDN,bd
RDN,Set5,3,34.58,0.9280,,RDN,bd
RDN,Set14,3,30.53,0.8447,,RDN,bd
bicubic,Set5,3,24.01,0.5369,0,RDN,dn
bicubic,Set14,3,22.87,0.4724,0,RDN,dn
SRCNN,Set5,3,25.01,0.6950,,RDN,dn
SRCNN,Set14,3,23.78,0.5898,,RDN,dn
RDN,Set5,3,28.47,0.8151,,RDN,dn
RDN,Set14,3,26.60,0.7101,,RDN,dn
"""


@dataclass(frozen=True)
class PublishedResult:
    """One cell of a paper's table: ``method`` on ``set`` at ``scale``."""

    method: str
    set: str
    scale: int
    psnr: float
    ssim: float | None
    params: int | None
    source: str
    degradation: str = "bicubic"


def _parse(text: str, origin: str) -> list[PublishedResult]:
    reader = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    missing = set(COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"{origin}: missing column(s) {sorted(missing)}; expected {COLUMNS}")
    rows = []
    for n, row in enumerate(reader, start=2):
        try:
            rows.append(
                PublishedResult(
                    method=row["method"].strip(),
                    set=row["set"].strip(),
                    scale=int(row["scale"]),
                    psnr=float(row["psnr"]),
                    ssim=float(row["ssim"]) if row["ssim"].strip() else None,
                    params=int(row["params"]) if row["params"].strip() else None,
                    source=row["source"].strip(),
                    degradation=_degradation(row.get("degradation")),
                )
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"{origin}, row {n}: {err} ({row})") from err
    return rows


def _degradation(value: str | None) -> str:
    name = (value or "").strip().lower() or "bicubic"
    name = _ALIASES.get(name, name)
    if name not in DEGRADATIONS:
        raise ValueError(f"degradation {value!r} is not one of {', '.join(DEGRADATIONS)}")
    return name


def load_published(path: str | Path | None = None) -> list[PublishedResult]:
    """The built-in reference table, or a CSV with the same columns (``#`` lines are comments)."""
    if path is None:
        origin = "built-in published table"
        return _parse(PUBLISHED_CSV, origin) + _parse(DEGRADED_CSV, f"{origin} (BD / DN)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"published-results CSV not found: {path}")
    return _parse(path.read_text(encoding="utf-8"), str(path))


def published(
    method: str | None = None,
    set: str | None = None,
    scale: int | None = None,
    degradation: str | None = None,
) -> list[PublishedResult]:
    """Built-in rows matching the given method (case-insensitive), set, scale and LR setting."""
    return [
        r
        for r in load_published()
        if (method is None or r.method.lower() == method.lower())
        and (set is None or r.set == set)
        and (scale is None or r.scale == scale)
        and (degradation is None or r.degradation == _degradation(degradation))
    ]
