#!/usr/bin/env bash
# A sweep on a SLURM cluster: ESPCN and VDSR at x2/x3/x4 (6 jobs), each job on one node with
# 4 GPUs under DDP, logged to W&B, requeued on timeout and resumed from its last.ckpt.
#
# Run it on a login node, inside tmux/screen: the sweep process submits a job array through
# submitit, waits for the jobs, and writes the sweep summary as they finish:
#
#   PARTITION=gpu ACCOUNT=my_lab bash scripts/sweep_slurm.sh
#   PARTITION=gpu bash scripts/sweep_slurm.sh trainer.max_epochs=5    # extra overrides
#   DRY_RUN=1 bash scripts/sweep_slurm.sh                             # print the command only
#
# Where things go: logs/train/multiruns/<time>_<pid>/
#   summary.md, summary.csv   overrides vs best val/psnr, refreshed as jobs finish
#   <job>/                    a run dir per job (.hydra/, checkpoints/, csv/, wandb/, train.log)
#   .submitit/<array id>/     SLURM stdout/stderr of each job
#
# What happens on the cluster (see docs/scaling.md):
# - each job asks for trainer.num_nodes nodes x trainer.devices tasks, one GPU per task;
#   SLURM starts the ranks and Lightning's SLURMEnvironment picks them up (no relaunch);
# - data.batch_size is per GPU: 4 GPUs x 16 = a global batch of 64;
# - 120 s before timeout_min SLURM signals the job; submitit requeues it (max_num_timeout
#   times); the rerun finds <job>/checkpoints/last.ckpt and <job>/wandb_id.txt and continues
#   the same training and the same W&B run;
# - on preemption (SIGTERM) last.ckpt is saved first.
#
# An Optuna search instead of a grid (n_jobs trials run at once, one SLURM job each):
#   sr-train hparams_search=optuna hydra/launcher=slurm hydra.sweeper.n_jobs=8 \
#     hydra.sweeper.n_trials=64 hydra.sweeper.storage=sqlite:///$PWD/optuna.db \
#     hydra.sweeper.study_name=espcn_x3 experiment=espcn_x3 trainer=gpu
set -euo pipefail

PARTITION=${PARTITION:?set PARTITION to your GPU partition, e.g. PARTITION=gpu}
ACCOUNT=${ACCOUNT:-}
GPUS=${GPUS:-4}
HOURS=${HOURS:-24}
SR_TRAIN=${SR_TRAIN:-sr-train}

# W&B: log in once on the login node (`wandb login`); on clusters without internet on the
# compute nodes use WANDB_MODE=offline and `wandb sync logs/train/multiruns/*/*/wandb/offline-run-*`.
export WANDB_PROJECT=${WANDB_PROJECT:-sr-lightning}

cmd=(
  "$SR_TRAIN" -m
  hydra/launcher=slurm
  "hydra.launcher.partition=$PARTITION"
  "hydra.launcher.timeout_min=$((HOURS * 60))"
  trainer=ddp
  "trainer.devices=$GPUS"
  trainer.num_nodes=1
  data=t91
  data.num_workers=6
  logger=wandb
  "logger.wandb.project=$WANDB_PROJECT"
  model=espcn,vdsr
  scale=2,3,4
)
if [[ -n "$ACCOUNT" ]]; then
  cmd+=("hydra.launcher.account=$ACCOUNT")
fi
cmd+=("$@")

echo "${cmd[*]}"
if [[ -z "${DRY_RUN:-}" ]]; then
  "${cmd[@]}"
fi
