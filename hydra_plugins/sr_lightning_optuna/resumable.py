"""An Optuna sweeper whose rerun on a stored study finishes the study instead of adding to it.

hydra-optuna-sweeper 1.3 runs ``n_trials`` new trials every time it starts, numbering the jobs
from 0 again, so rerunning a killed search on its sqlite study ran too many trials and wrote
them into the dirs of the finished ones. This sweeper, before the plugin's own ``sweep``:

* counts the study's finished trials (complete, pruned, failed) and runs only the rest;
* numbers the new jobs after the study's trials (job dir N is trial N, as in the first run);
* tells Optuna ``FAIL`` for the trials a killed sweep left ``RUNNING`` and enqueues their
  parameters, so the next trials try them again (in new dirs: they start over).

It assumes no other sweeper is running the same study at the time.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)


class ResumableOptunaSweeper(OptunaSweeper):
    """``hydra.sweeper._target_`` of ``hparams_search=optuna`` (see the module doc)."""

    def sweep(self, arguments: list[str]) -> Any:
        impl = self.sweeper
        if impl.storage:
            resume_study(impl)
        return impl.sweep(arguments)


def resume_study(impl: Any) -> None:
    """Shrink ``impl.n_trials`` to what the stored study still lacks; set the job numbers."""
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
    except KeyError:
        return  # a new study
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params)
            log.warning(
                "trial %d was interrupted: marked FAIL, its parameters enqueued", trial.number
            )
    # the interrupted ones count as RUNNING here: they are tried again
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in trials)
    impl.job_idx = len(trials)
    left = max(0, impl.n_trials - done)
    log.info("study %s holds %d finished trials: running %d more", impl.study_name, done, left)
    impl.n_trials = left
