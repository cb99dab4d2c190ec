"""Ships conf/ (kept at the repository's top level) inside the wheel as ``sr_lightning/conf``,
and sr-report's page assets (``sr_lightning/apps/report_assets``).

Everything else is in pyproject.toml; a package-dir mapping for one folder cannot be
combined with ``packages.find`` there. Each config group is a data-only package.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

CONF = Path(__file__).parent / "conf"
groups = sorted(p.relative_to(CONF).as_posix() for p in CONF.rglob("*") if p.is_dir())
conf_packages = ["sr_lightning.conf", *(f"sr_lightning.conf.{g.replace('/', '.')}" for g in groups)]

setup(
    packages=[
        *find_namespace_packages(include=["sr_lightning*", "hydra_plugins*"]),
        *conf_packages,
    ],
    package_dir={"sr_lightning.conf": "conf"},
    package_data={
        **{name: ["*.yaml"] for name in conf_packages},
        # sr-report's HTML page copies its script and style from here
        "sr_lightning.apps.report_assets": ["*.js", "*.css"],
    },
)
