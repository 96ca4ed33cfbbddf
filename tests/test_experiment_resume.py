"""Resuming `medmm experiment medm-plm`: finished runs are skipped, everything else is rerun, and
the report is the same bytes as an uninterrupted run's.

Grid: lr and a tiny MedM-PLM on readmission, seeds 0 and 1, Figure 4 at 50 % for lr: 6 runs of
one epoch on 100 synthetic patients (the tiny world of tests/test_experiment.py). Every test
works in the same OUT path as the reference run, because results.json names each run's directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medmm.recipes import experiment, finetune
from medmm.recipes.experiment import ExperimentConfig, run_medm_plm_experiment
from medmm.recipes.finetune import FinetuneConfig

OUTPUTS = ("results.json", "results.csv", "report.md")
N_RUNS = 6  # 2 models x 2 seeds + lr at 50 % x 2 seeds


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world):
    from medmm.models.assets import Assets

    w = make_tiny_world(tmp_path_factory.mktemp("resume"), 100,
                        dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32))
    root = w["root"]
    assets = Assets.from_medm_plm(root / "medm-plm" / "model", text_path=root / "text-mlm" / "text")
    return {**w, "assets": assets, "base": root / "runs"}


def small_cfg(**overrides) -> ExperimentConfig:
    ft = FinetuneConfig(max_text_len=32, max_history=2, num_threads=1, readmission_balance="natural")
    ft.train.epochs = 1
    return ExperimentConfig(finetune=ft, ratio_models=["lr"], **overrides)


def run(world, cfg: ExperimentConfig) -> Path:
    return run_medm_plm_experiment(world["data"], world["base"] / "exp", world["assets"], models=["lr", "medm-plm"],
                                   tasks=["readmission"], seeds=2, train_ratios=(0.5, 1.0), cfg=cfg,
                                   raw_dir=world["raw"])


class Calls:
    """Stands in for `run_finetune` in the parent process: records each run's (model, seed,
    fraction) and, after `stop_after` runs, lets one more finish and then raises KeyboardInterrupt
    (so that run's own result.json is on disk but the experiment never recorded it)."""

    def __init__(self, monkeypatch, stop_after: int | None = None):
        self.keys: list[tuple[str, int, float]] = []
        real = finetune.run_finetune  # not experiment's, which may be an earlier stand-in

        def fake(model, *args, **kw):
            self.keys.append((model, kw["seed"], kw["train_fraction"]))
            out = real(model, *args, **kw)
            if stop_after is not None and len(self.keys) > stop_after:
                raise KeyboardInterrupt
            return out

        monkeypatch.setattr(experiment, "run_finetune", fake)


@pytest.fixture(scope="module")
def reference(world):
    """An uninterrupted run's outputs (bytes) and run directory, moved aside to base/ref."""
    with pytest.MonkeyPatch.context() as mp:
        calls = Calls(mp)
        run(world, small_cfg())
    assert len(calls.keys) == N_RUNS
    ref = world["base"] / "ref"
    (world["base"] / "exp").rename(ref)
    res = json.loads((ref / "results.json").read_text())
    assert res["attention"] is not None and len(res["runs"]) == N_RUNS
    return {"dir": ref, **{f: (ref / f).read_bytes() for f in OUTPUTS}}


@pytest.fixture
def out(world):
    path = world["base"] / "exp"
    shutil.rmtree(path, ignore_errors=True)
    return path


def assert_same_outputs(out: Path, reference) -> None:
    for f in OUTPUTS:
        assert (out / f).read_bytes() == reference[f], f


def results(out: Path) -> dict[str, dict]:
    """run directory (relative to out/runs) -> its result.json, for the runs that have one."""
    return {str(p.parent.relative_to(out / "runs")): json.loads(p.read_text())
            for p in sorted((out / "runs").rglob("result.json"))}


def test_interrupted_sequential_run_resumes_with_the_missing_runs_only(world, reference, out, monkeypatch, capsys):
    with pytest.raises(KeyboardInterrupt):
        Calls(monkeypatch, stop_after=3)
        run(world, small_cfg())
    first = results(out)
    recorded = {k for k, r in first.items() if "config_hash" in r}
    half = {k for k, r in first.items() if "config_hash" not in r}
    assert len(recorded) == 3 and len(half) == 1  # the 4th run finished but was never recorded
    assert "readmission/medm-plm/seed0" in recorded  # Figure 5's run: skipped below
    assert not (out / "results.json").exists()

    capsys.readouterr()
    calls = Calls(monkeypatch)
    run(world, small_cfg())
    err = capsys.readouterr().err
    assert len(calls.keys) == N_RUNS - 3
    assert half.pop() in {f"readmission/{m}/seed{s}" + ("-f0.5" if f < 1 else "") for m, s, f in calls.keys}
    assert "6 runs: 3 finished by an earlier invocation" in err and "3 to run" in err
    assert "result.json has no config_hash" in err
    assert_same_outputs(out, reference)
    res = json.loads((out / "results.json").read_text())
    assert not any(k in r for r in res["runs"] for k in experiment.CLOCK_KEYS)  # they are in timings.json
    timings = json.loads((out / "timings.json").read_text())
    assert timings["runs_run"] == 3 and timings["runs_skipped"] == 3
    assert all(r["wall_time_s"] > 0 for r in timings["runs"])  # skipped runs keep their own seconds
    assert sum(r["ran_now"] for r in timings["runs"]) == 3


def test_a_run_failing_in_a_worker_leaves_the_others_saved(world, reference, out, monkeypatch, capsys):
    # A checkpoint that is not there makes every medm-plm run raise in its worker process (a
    # valid option, so the config checks pass); the lr runs go on.
    bad = small_cfg(workers=2)
    bad.finetune.model_overrides = {"medm-plm": {"checkpoint": str(world["base"] / "no_such_checkpoint")}}
    with pytest.raises(FileNotFoundError, match="no_such_checkpoint"):
        run(world, bad)
    err = capsys.readouterr().err
    assert "run medm-plm / readmission / seed 0 failed" in err and "2 of 6 runs failed" in err
    first = results(out)
    assert sorted(first) == ["readmission/lr/seed0", "readmission/lr/seed0-f0.5", "readmission/lr/seed1",
                             "readmission/lr/seed1-f0.5"]
    assert all("config_hash" in r for r in first.values())
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "runs").rglob("result.json")}

    calls = Calls(monkeypatch)
    run(world, small_cfg())  # the fixed config, sequentially: results do not depend on the schedule
    assert sorted(calls.keys) == [("medm-plm", 0, 1.0), ("medm-plm", 1, 1.0)]
    assert all((p.stat().st_mtime_ns, p.read_bytes()) == st for p, st in stamps.items())  # not rewritten
    assert_same_outputs(out, reference)


def test_a_truncated_or_foreign_result_is_rerun_not_trusted(world, reference, out, monkeypatch, capsys):
    shutil.copytree(reference["dir"], out)
    truncated = out / "runs/readmission/lr/seed1/result.json"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    foreign = out / "runs/readmission/lr/seed0-f0.5/result.json"
    res = json.loads(foreign.read_text())
    foreign.write_text(json.dumps({**res, "config_hash": "0" * 64}))  # another config's result

    calls = Calls(monkeypatch)
    run(world, small_cfg())
    err = capsys.readouterr().err
    assert sorted(calls.keys) == [("lr", 0, 0.5), ("lr", 1, 1.0)]
    assert "rerun lr / readmission / seed 1: result.json is unreadable (JSONDecodeError" in err
    assert "rerun lr / readmission / seed 0 / 50% of train: the config changed" in err
    assert_same_outputs(out, reference)


def test_a_changed_config_reruns_exactly_the_runs_it_changes(world, reference, out, monkeypatch, capsys):
    shutil.copytree(reference["dir"], out)
    cfg = small_cfg()
    cfg.finetune.icd_top_k = 7  # an ICD-coding option: no readmission run depends on it
    calls = Calls(monkeypatch)
    run(world, cfg)
    assert calls.keys == []
    for f in ("results.csv", "report.md"):  # results.json differs in its config section only
        assert (out / f).read_bytes() == reference[f], f
    assert "6 runs: 6 finished by an earlier invocation" in capsys.readouterr().err

    cfg.finetune.lr["lr"] = 5e-3  # the lr model's learning rate only
    calls = Calls(monkeypatch)
    run(world, cfg)
    assert sorted(calls.keys) == [("lr", 0, 0.5), ("lr", 0, 1.0), ("lr", 1, 0.5), ("lr", 1, 1.0)]
    assert "the config changed (finetune.train.lr 0.001 -> 0.005)" in capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert {r["lr"] for r in res["runs"] if r["model"] == "lr"} == {5e-3}
    ref = json.loads(reference["results.json"])
    assert [r for r in res["runs"] if r["model"] == "medm-plm"] == [r for r in ref["runs"] if r["model"] == "medm-plm"]


def test_a_run_interrupted_in_training_continues_from_its_checkpoint(world, monkeypatch, capsys):
    """Killed after one optimizer step (its checkpoints/last written, as a preemption leaves it),
    the run continues from that step, not from the start, and ends with the uninterrupted run's
    report, byte for byte."""
    cfg = small_cfg()
    cfg.finetune.train.epochs = 2
    out = world["base"] / "mid"

    def go() -> None:
        run_medm_plm_experiment(world["data"], out, world["assets"], models=["medm-plm"], tasks=["readmission"],
                                seeds=1, train_ratios=(1.0,), cfg=cfg, raw_dir=world["raw"])

    shutil.rmtree(out, ignore_errors=True)
    go()
    ref = {f: (out / f).read_bytes() for f in OUTPUTS}
    summary = json.loads((out / "runs/readmission/medm-plm/seed0/train/summary.json").read_text())
    total = summary["global_step"]
    assert total >= 2 and summary["steps_this_run"] == total
    shutil.rmtree(out)

    class Preempted(finetune.Trainer):
        def fit(self, resume=False, *, stop_after=None, overwrite=False):
            super().fit(resume, stop_after=1, overwrite=overwrite)
            raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(finetune, "Trainer", Preempted)
        with pytest.raises(KeyboardInterrupt):
            go()
    run_dir = out / "runs/readmission/medm-plm/seed0"
    assert (run_dir / "train/checkpoints/last/trainer_state.json").is_file()
    assert not (run_dir / "result.json").exists()

    capsys.readouterr()
    go()
    assert "resume medm-plm / readmission / seed 0 from its checkpoint at step 1" in capsys.readouterr().err
    summary = json.loads((run_dir / "train/summary.json").read_text())
    assert summary["global_step"] == total and summary["steps_this_run"] == total - 1
    for f in OUTPUTS:
        assert (out / f).read_bytes() == ref[f], f
    assert not (run_dir / "train/checkpoints").exists()  # removed once the run is recorded


def test_a_checkpoint_of_another_config_is_not_resumed(world, reference, out, monkeypatch, capsys):
    """A leftover checkpoints/last whose run_config.json is not the current config starts afresh."""
    shutil.copytree(reference["dir"], out)
    run_dir = out / "runs/readmission/lr/seed1"
    (run_dir / "result.json").unlink()
    state = run_dir / "train/checkpoints/last/trainer_state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"global_step": 1}))
    stored = json.loads((run_dir / "run_config.json").read_text())
    stored["finetune"]["train"]["lr"] = 0.5
    (run_dir / "run_config.json").write_text(json.dumps(stored))
    assert experiment.resumable_step(experiment._run_spec(out, "readmission", "lr", 1, 1.0, small_cfg(),
                                     experiment.input_identity(world["data"], world["assets"]), 0)) is None
    calls = Calls(monkeypatch)
    run(world, small_cfg())
    err = capsys.readouterr().err
    assert calls.keys == [("lr", 1, 1.0)] and "resume lr" not in err
    assert_same_outputs(out, reference)
