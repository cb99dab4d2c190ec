"""A run or sweep directory that cannot be created fails with one line naming the key.

Hydra creates ``hydra.run.dir`` (``hydra.sweep.dir`` for ``-m``) before any of our code runs,
and a folder it cannot make surfaces as a chained ``pathlib`` traceback. This Hydra callback
checks first, from ``on_run_start`` / ``on_multirun_start``, and exits with the key, the path,
the reason and the way out.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def unwritable_reason(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written into; None when it can."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            return f"no part of {folder} exists"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    return None


def check_output_dir(folder: str | Path, key: str) -> None:
    """Make ``folder`` as Hydra would; exit (status 2, no traceback) naming ``key`` if that fails.

    Creating it is the only test that also holds for root, read-only mounts and /proc.
    """
    path = Path(folder).expanduser().absolute()
    reason = unwritable_reason(path)
    if reason is None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            reason = err.strerror or str(err)
    if reason:
        print(
            f"error: cannot create {key}={folder}: {reason}. Pass {key}=<a writable folder>, "
            "or move every run with paths.log_dir=<folder>.",
            file=sys.stderr,
        )
        raise SystemExit(2)


class OutputDirCheck(Callback):
    """Hydra callback: check the run (or sweep) dir before Hydra tries to create it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_output_dir(str(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the sweep dir's interpolations need the sweep's Hydra config registered
        HydraConfig.instance().set_config(config)
        check_output_dir(str(config.hydra.sweep.dir), "hydra.sweep.dir")


def close_log_files_in(folder: Path) -> None:
    """Detach and close the logging file handlers writing into ``folder`` (Hydra's job log)."""
    folder = folder.resolve()
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):
            path = getattr(handler, "baseFilename", None)
            if path and Path(path).resolve().is_relative_to(folder):
                logger.removeHandler(handler)
                handler.close()
