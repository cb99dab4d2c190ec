"""The Lightning / Hydra / W&B plumbing: fault tolerance and checkpoint writing, DDP and SLURM
launching, sweep summaries, callbacks, console output, user-facing errors and start-up checks.
Lightning's private internals are touched only in :mod:`.lightning_compat`."""
