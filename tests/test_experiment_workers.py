"""A worker process that dies (SIGKILL, as from the out-of-memory killer) fails the experiment
with the unfinished runs named, instead of waiting forever; the runs finished before stay
recorded and the same command again completes the rest.

Grid: lr and a tiny MedM-PLM on readmission, seeds 0 and 1, one epoch, 2 spawned workers, on 100
synthetic patients. The experiment runs in a subprocess (tests/_experiment_kill_worker.py) with a
timeout, so a hang fails the test rather than the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import _experiment_kill_worker as K

SCRIPT = Path(K.__file__)
TIMEOUT_S = 300  # far above the 15-60 s the killed invocation takes; a hang hits it


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world):
    return make_tiny_world(tmp_path_factory.mktemp("kill"), 100,
                           dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32))


def run_script(root: Path, out: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(root), str(out)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=TIMEOUT_S)


def recorded(out: Path) -> set[str]:
    return {str(p.parent.relative_to(out / "runs")) for p in (out / "runs").rglob("result.json")
            if "config_hash" in json.loads(p.read_text())}


def test_a_killed_worker_fails_the_experiment_and_a_rerun_completes_it(world, tmp_path, capsys):
    out = tmp_path / "exp"
    # Longest runs first: medm-plm seeds 0 and 1, then lr seed 0, then lr seed 1 -- killed when it
    # starts, by which time two runs have finished (a worker takes a job only when it is free).
    first = run_script(world["root"], out, MEDMM_TEST_KILL_RUN="lr/1")
    assert first.returncode != 0, first.stderr[-3000:]
    assert "BrokenProcessPool" in first.stderr and "a worker process died" in first.stderr, first.stderr[-3000:]
    assert "runs did not finish: " in first.stderr and "lr / readmission / seed 1" in first.stderr
    done = recorded(out)
    assert 2 <= len(done) < 4 and "readmission/lr/seed1" not in done, done
    assert f"The {len(done)} finished runs are saved" in first.stderr
    assert not (out / "report.md").exists()

    # The same experiment again, in this process (nothing killed): only the unfinished runs run.
    capsys.readouterr()
    K.main(world["root"], out)
    err = capsys.readouterr().err
    assert f"4 runs: {len(done)} finished by an earlier invocation in {out} (skipped), {4 - len(done)} to run" in err
    assert recorded(out) == {f"readmission/{m}/seed{s}" for m in ("lr", "medm-plm") for s in (0, 1)}
    res = json.loads((out / "results.json").read_text())
    assert len(res["runs"]) == 4 and (out / "report.md").is_file()


def test_workers_killed_at_start_up_fail_the_experiment_instead_of_hanging(world, tmp_path):
    """Killed before reading their state (as the OOM killer might, while the state is large): the
    parent must not wait on them -- it raises, naming every run, and records none."""
    out = tmp_path / "exp"
    res = run_script(world["root"], out, MEDMM_TEST_KILL_AT_START="1")
    assert res.returncode != 0 and "BrokenProcessPool" in res.stderr, res.stderr[-3000:]
    assert "4 of 4 runs did not finish" in res.stderr and "The 0 finished runs are saved" in res.stderr
    assert not recorded(out) if (out / "runs").exists() else True
