"""The grid runner that experiment recipes share: each run recorded in its own directory, resumed,
and spread over worker processes, with no module state carrying data between processes.

A recipe describes each run by an object with (the `Run` protocol):
    label        for logs ("medm-plm / readmission / seed 0")
    dir          its directory; what the runner writes there:
                     run_config.json  `config`, written when the run starts
                     result.json      the job's result plus `config_hash`, written last and
                                      atomically, so it marks the run finished
    config       everything its result depends on (JSON-able); `config_hash` its sha256
    required     names of further JSON files a finished run has written beside result.json
    resume       whether to continue its interrupted training (`resumable_step`)
and a job function `job(run, state) -> (result dict, {file name: JSON-able})`, defined at module
level so that spawned workers import it by name. `state` is the recipe's data for every run
(configs, datasets, assets). With `workers` > 1 the parent writes it to a temporary directory
with the recipe's `save_state(state, dir)` and each worker reads it once with `load_state(dir)`
(both module-level functions): large arrays can then be memory-mapped rather than copied into
each worker. An optional `on_recorded(run)` (module-level too) runs once the run's result.json is
written, e.g. to remove its training checkpoints only when they are no longer needed to resume.

A run is finished when its result.json parses and holds the current config's hash, and its
`required` files parse (`stored_result`); anything else runs again, and a log line says why. A
run interrupted during training whose run_config.json is the current one continues from its
train/checkpoints/last (`resumable_step`), which the training loop resumes exactly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import multiprocessing as mp
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

from medmm.data.io import atomic_write_text, jsonable

RESULT, RUN_CONFIG = "result.json", "run_config.json"
CLOCK_KEYS = ("wall_time_s", "cpu_time_s", "train_time_s")  # per run; kept out of the results tables


class Run(Protocol):
    label: str
    dir: Path
    config: dict[str, Any]
    config_hash: str
    required: tuple[str, ...]
    resume: bool


Job = Callable[[Any, Any], tuple[dict[str, Any], dict[str, Any]]]


def sha256_json(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Records


def stored_result(run: Run) -> tuple[dict[str, Any] | None, str | None]:
    """(result, None) if an earlier invocation finished this run with the same config, else
    (None, why its record cannot be used; None when there is none)."""
    path = run.dir / RESULT
    if not path.is_file():
        return None, None
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # a truncated file is a JSONDecodeError (a ValueError)
        return None, f"{RESULT} is unreadable ({type(e).__name__}: {e})"
    if not isinstance(res, dict) or not isinstance(res.get("metrics"), dict):
        return None, f"{RESULT} holds no run result"
    if "config_hash" not in res:
        return None, f"{RESULT} has no config_hash (the run stopped before it was recorded)"
    if res["config_hash"] != run.config_hash:
        return None, f"the config changed ({config_changes(run)})"
    for name in run.required:
        try:
            json.loads((run.dir / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, f"no {name} (this run now writes one)"
        except (ValueError, OSError) as e:
            return None, f"{name} is unreadable ({type(e).__name__}: {e})"
    return res, None


def resumable_step(run: Run) -> int | None:
    """The global step of an interrupted run's last checkpoint, if this run wrote it: the stored
    run_config.json is the current config (so the checkpoint is this run's, not another config's)."""
    state = run.dir / "train" / "checkpoints" / "last" / "trainer_state.json"
    try:
        stored = json.loads((run.dir / RUN_CONFIG).read_text(encoding="utf-8"))
        step = json.loads(state.read_text(encoding="utf-8"))["global_step"]
    except (ValueError, OSError, KeyError, TypeError):
        return None
    return int(step) if stored == json.loads(json.dumps(run.config)) else None


def config_changes(run: Run, most: int = 3) -> str:
    """'finetune.train.lr 0.0002 -> 0.001, ...' from the stored run_config.json."""
    try:
        old = json.loads((run.dir / RUN_CONFIG).read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return f"config_hash differs; no readable {RUN_CONFIG}"
    a, b = _flatten(old), _flatten(json.loads(json.dumps(run.config)))
    diff = [f"{k} {a.get(k, '(none)')} -> {b.get(k, '(none)')}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]
    if not diff:
        return "config_hash differs"
    return ", ".join(diff[:most]) + (f" and {len(diff) - most} more" if len(diff) > most else "")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    if not isinstance(d, dict) or not d:
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for key, val in d.items():
        out.update(_flatten(val, f"{prefix}{key}."))
    return out


def load_result(run: Run) -> dict[str, Any]:
    """The finished run's result as reports use it (NaN metrics are null in JSON)."""
    res, why = stored_result(run)
    if res is None:
        raise RuntimeError(f"{run.dir}: run {run.label} has no usable {RESULT} ({why or 'none written'})")
    for key in ("metrics", "best_val"):
        if isinstance(res.get(key), dict):
            res[key] = {k: math.nan if v is None else v for k, v in res[key].items()}
    res["out_dir"] = str(run.dir)  # where it is now, should OUT have moved since the run
    return res


def pending(runs: Sequence[Run], log: Callable[[str], None]) -> list[Run]:
    """The runs without a usable record, each marked to resume when it can (`resumable_step`),
    with a log line for every one that had a record it cannot use."""
    todo = []
    for run in runs:
        res, why = stored_result(run)
        if res is not None:
            continue
        todo.append(run)
        step = resumable_step(run)
        run.resume = step is not None
        if run.resume:
            log(f"resume {run.label} from its checkpoint at step {step}" + (f" ({why})" if why else ""))
        elif why:
            log(f"rerun {run.label}: {why}")
    return todo


# ---------------------------------------------------------------------------------------------
# Running


def _record(job: Job, run: Run, state: Any,
            on_recorded: Callable[[Run], None] | None = None) -> tuple[dict[str, Any], float]:
    """One run, recorded in run.dir: run_config.json first, the job's files, result.json last
    (then `on_recorded(run)`)."""
    for name in (RESULT, *run.required):  # nothing an earlier run left here may pass for this run's
        (run.dir / name).unlink(missing_ok=True)
    run.dir.mkdir(parents=True, exist_ok=True)
    # First: what the checkpoints about to be written belong to (`resumable_step` reads it).
    atomic_write_text(run.dir / RUN_CONFIG, json.dumps(run.config, indent=2, sort_keys=True) + "\n")
    t_run = time.perf_counter()
    res, files = job(run, state)
    for name, obj in files.items():
        atomic_write_text(run.dir / name, json.dumps(obj) + "\n")
    atomic_write_text(run.dir / RESULT, json.dumps({**jsonable(res), "config_hash": run.config_hash}, indent=2)
                      + "\n")
    if on_recorded is not None:
        on_recorded(run)
    return res, time.perf_counter() - t_run


@functools.lru_cache(maxsize=1)
def _worker_state(load_state: Callable[[str], Any], state_dir: str) -> Any:
    """A worker's state, read once per worker from the directory the parent wrote it to."""
    return load_state(state_dir)


def _in_worker(job: Job, load_state: Callable[[str], Any], k: int, run: Run, state_dir: str,
               on_recorded: Callable[[Run], None] | None = None) -> tuple[int, dict[str, Any], float]:
    try:
        res, secs = _record(job, run, _worker_state(load_state, state_dir), on_recorded)
    except Exception as e:
        e.add_note(f"run {run.label} failed")  # travels back from the worker with e
        raise
    return k, res, secs


def run_jobs(runs: Sequence[Run], job: Job, state: Any, workers: int, log: Callable[[str], None],
             describe: Callable[[Run, dict[str, Any], float], str],
             save_state: Callable[[Any, Path], None] | None = None,
             load_state: Callable[[str], Any] | None = None,
             on_recorded: Callable[[Run], None] | None = None) -> None:
    """Every run, in the given order, sequentially or in `workers` worker processes, each
    recorded in its directory; `describe(run, result, seconds)` is its progress line;
    `on_recorded(run)` runs after its result.json is written (in the process that ran it).

    Workers are SPAWNED, not forked: polars' and torch's thread pools do not survive a fork (a
    forked worker deadlocks in its first parallel polars call). The state goes to them in files
    (`save_state` / `load_state`), not down the pipe of a spawned process's arguments, whose read
    end the parent keeps open until the write ends (a worker killed while reading a large state,
    e.g. by the OOM killer, would block the parent forever). Each run seeds itself, so a result
    does not depend on which process ran it or in what order.

    A run that raises is logged and the others go on (each finished one is saved); the first
    error is raised at the end, so the same command run again does only the failed runs. A
    worker that dies (killed by a signal) breaks the pool: every run not finished by then is
    named in the `BrokenProcessPool` raised, the finished ones stay recorded
    (`concurrent.futures` notices the dead process; `multiprocessing.Pool` would wait for its
    result forever). An interrupt (Ctrl-C) stops the pool at once: the runs in flight are lost,
    the finished ones kept.
    """
    failed: list[Exception] = []
    total = len(runs)

    def log_run(n: int, run: Run, item: tuple[dict[str, Any], float] | Exception) -> None:
        if isinstance(item, Exception):
            failed.append(item)
            note = (getattr(item, "__notes__", None) or [f"run {run.label} failed"])[-1]
            log(f"[{n}/{total}] {note}: {type(item).__name__}: {item}")
            return
        log(f"[{n}/{total}] {describe(run, *item)}")

    workers = min(workers, total)
    if workers > 1:
        if save_state is None or load_state is None:
            raise ValueError("run_jobs: worker processes need save_state and load_state")
        tmp = tempfile.TemporaryDirectory(prefix="medmm-workers-")
        save_state(state, Path(tmp.name))
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        try:
            futures: dict[Any, Run] = {}
            broken: BrokenProcessPool | None = None
            for k, run in enumerate(runs):
                try:
                    futures[pool.submit(_in_worker, job, load_state, k, run, tmp.name, on_recorded)] = run
                except BrokenProcessPool as e:  # a worker died already (at start-up)
                    broken = e
                    break
            unfinished = list(runs[len(futures):])
            n = 0
            for fut in as_completed(futures):
                try:
                    _, res, secs = fut.result()
                    item: tuple[dict[str, Any], float] | Exception = (res, secs)
                except BrokenProcessPool as e:  # a worker died: this run and every pending one
                    unfinished.append(futures[fut])
                    broken = broken or e
                    continue
                except Exception as e:  # that run's own error; the others go on
                    item = e
                n += 1
                log_run(n, futures[fut], item)
            if broken is not None:
                names = "; ".join(r.label for r in sorted(unfinished, key=lambda r: str(r.dir)))
                msg = (f"a worker process died (killed by a signal, e.g. the out-of-memory killer, or crashed): "
                       f"{len(unfinished)} of {total} runs did not finish: {names}. The {n - len(failed)} "
                       "finished runs are saved, so the same command again runs only the others")
                log(msg)
                raise BrokenProcessPool(msg) from broken
        except BaseException:
            _terminate_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            tmp.cleanup()
    else:
        for n, run in enumerate(runs, 1):
            try:
                item = _record(job, run, state, on_recorded)
            except Exception as e:
                e.add_note(f"run {run.label} failed")
                item = e
            log_run(n, run, item)
    if failed:
        log(f"{len(failed)} of {total} runs failed; the others are saved, so the same command again "
            "runs only the failed ones")
        raise failed[0]


def _terminate_workers(pool: Any) -> None:
    """Stop a ProcessPoolExecutor's workers now (its `shutdown` waits for the running jobs)."""
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


__all__ = ["Run", "RESULT", "RUN_CONFIG", "CLOCK_KEYS", "sha256_json", "stored_result", "resumable_step",
           "config_changes", "load_result", "pending", "run_jobs"]
