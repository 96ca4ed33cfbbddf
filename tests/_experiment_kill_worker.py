"""Script for tests/test_experiment_workers.py: a tiny MedM-PLM experiment in 2 spawned worker
processes, where the worker that starts the run named by MEDMM_TEST_KILL_RUN ("<model>/<seed>")
is killed with SIGKILL, as the out-of-memory killer would (with MEDMM_TEST_KILL_AT_START set,
every worker is killed as it starts).

The stand-in for `run_finetune` is installed when this file is imported with that variable set:
a spawned worker imports the parent's main script (as `__mp_main__`) before it runs a job, so the
workers get it too. Imported without it (the test's own process), it changes nothing.

    python _experiment_kill_worker.py ROOT OUT      (ROOT: a `tiny_world` directory)
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from medmm.recipes import experiment

_real_run_finetune = experiment.run_finetune


def _run_finetune(model, *args, **kw):
    if os.environ.get("MEDMM_TEST_KILL_RUN") == f"{model}/{kw['seed']}":
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_run_finetune(model, *args, **kw)


if os.environ.get("MEDMM_TEST_KILL_RUN"):
    experiment.run_finetune = _run_finetune
if os.environ.get("MEDMM_TEST_KILL_AT_START") and __name__ == "__mp_main__":
    os.kill(os.getpid(), signal.SIGKILL)  # a worker killed at start-up, before it has read its state


def main(root: Path, out: Path) -> None:
    from medmm.models.assets import Assets
    from medmm.recipes.finetune import FinetuneConfig

    ft = FinetuneConfig(max_text_len=32, max_history=2, num_threads=1, readmission_balance="natural")
    ft.train.epochs = 1
    assets = Assets.from_medm_plm(root / "medm-plm" / "model", text_path=root / "text-mlm" / "text")
    experiment.run_medm_plm_experiment(root / "dataset", out, assets, models=["lr", "medm-plm"], tasks=["readmission"],
                                       seeds=2, train_ratios=(1.0,), raw_dir=root / "raw",
                                       cfg=experiment.ExperimentConfig(finetune=ft, workers=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
