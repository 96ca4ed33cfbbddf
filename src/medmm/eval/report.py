"""Experiment reports: Table III (Markdown / CSV / JSON) and the two figures of MedM-PLM.

Pure writers: they take numbers and strings, never models or datasets.

    table = table_iii(per_seed, tasks, oracle=...)          # -> ReportTable (markdown, csv, data)
    plot_training_ratio(curves, "figures/training_ratio.png", task="readmission")   # Figure 4
    plot_attention(words, w_words, codes, w_codes, "figures/attention.png")  # Figure 5
    comparison_sentences(per_seed, tasks, "medm-plm")        # honest "does not beat" lines
    metric_definitions(tasks)                                # one line defining each column
    training_header(runs), training_markdown(runs), runs_csv(runs)  # epochs per run; runs at their cap

Figures use matplotlib's Agg backend (no display needed) and are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medmm.data.io import jsonable
from medmm.eval.aggregate import format_mean_std, mean_std, results_table

TABLE_METRICS = ("f1", "accuracy", "auroc")  # Table III: F1 / Accuracy / AUC per task
METRIC_NAMES = {"f1": "F1", "accuracy": "Acc", "auroc": "AUROC", "f1_pos@0.5": "F1 pos. @0.5",
                "macro_f1@0.3": "macro-F1 @0.3", "ap": "AP", "pr_auc_trapz": "PR-AUC trapz"}


def task_title(task: str) -> str:
    """The task's name in reports (`Task.title`), e.g. "ICD coding"; the name itself if unregistered."""
    from medmm.tasks.registry import TASKS, task_class

    return task_class(task).title if task in TASKS else task


ORACLE_ROW = "oracle (generator truth)"
ORACLE_FRAC = "oracle_frac"


def column(task: str, metric: str) -> str:
    return f"{task}:{metric}"


def metric_definitions(tasks: Sequence[str], metrics: Sequence[str] = TABLE_METRICS) -> list[str]:
    """One Markdown line per (task, metric) that has a definition: "Readmission F1: ...".

    The definitions are the tasks' own (`Task.metric_definitions`); a pair without one is
    skipped (there is nothing true to say).
    """
    from medmm.tasks.registry import task_class

    out = []
    for t in tasks:
        defs = task_class(t).metric_definitions
        for m in metrics:
            if m in defs:
                out.append(f"{task_title(t)} {METRIC_NAMES.get(m, m)} (`{m}`): {defs[m]}")
    return out


def oracle_fraction(auroc: float, oracle_auroc: float) -> float:
    """Recovered fraction of the oracle's margin over chance: (AUROC - 0.5) / (oracle AUROC - 0.5)."""
    if not oracle_auroc > 0.5 or math.isnan(auroc):
        return float("nan")
    return (auroc - 0.5) / (oracle_auroc - 0.5)


@dataclass
class ReportTable:
    markdown: str
    csv: str
    data: dict


def table_iii(per_seed: Mapping[str, Mapping[str, Sequence[Mapping[str, float]]]], tasks: Sequence[str],
              oracle: Mapping[str, Mapping[str, float]] | None = None,
              metrics: Sequence[str] = TABLE_METRICS,
              training: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
              row_names: Mapping[str, str] | None = None) -> ReportTable:
    """Table III from `per_seed[model][task] = [test metrics of each seed]`.

    Rows = models (in the given order), columns = `metrics` per task as mean (std) over seeds, in
    percent; a metric missing from any of a model's runs (a result written before the metric
    existed) leaves that cell empty rather than averaging fewer seeds. With `oracle[task]` (the
    generator's ground-truth scorer on the same test samples) an oracle row is added and, for
    each task with an oracle, a column with each model's recovered fraction of the oracle's AUROC
    margin over chance (per seed, then mean (std)).

    With `training[model][task]` (each seed's run result, or its `TRAINING_FIELDS`) the CSV also
    has `<task>:best_epoch`, `<task>:epochs_run` and `<task>:peaked_at_cap` (mean = the fraction
    of seeds that peaked at their epoch cap) after the metric columns; the Markdown and `data`
    keep the metrics only. `row_names`: the models' names in the Markdown (the papers' names;
    the CSV and `data` keep the registry ids).
    """
    columns = [column(t, m) for t in tasks for m in metrics]
    headers = {column(t, m): f"{task_title(t)} {METRIC_NAMES.get(m, m)}" for t in tasks for m in metrics}
    oracle = oracle or {}
    frac_tasks = [t for t in tasks if t in oracle]
    for t in frac_tasks:
        columns.append(column(t, ORACLE_FRAC))
        headers[column(t, ORACLE_FRAC)] = f"{task_title(t)} % of oracle margin"
    rows: dict[str, dict[str, list[float]]] = {}
    for model, by_task in per_seed.items():
        row: dict[str, list[float]] = {}
        for t in tasks:
            runs = by_task.get(t) or []
            for m in metrics:
                if runs and all(m in r for r in runs):
                    row[column(t, m)] = [float(r[m]) for r in runs]
            if t in frac_tasks and runs:
                o = float(oracle[t]["auroc"])
                row[column(t, ORACLE_FRAC)] = [oracle_fraction(float(r["auroc"]), o) for r in runs]
        rows[model] = row
    if oracle:
        rows[ORACLE_ROW] = {column(t, m): [float(oracle[t][m])] for t in oracle if t in tasks for m in metrics
                            if m in oracle[t]}
    md, csv, data = results_table(rows, columns, headers=headers, bold_best=False, row_names=row_names)
    data["headers"] = headers
    data["row_names"] = {m: (row_names or {}).get(m, m) for m in rows}  # how the Markdown names each row
    if training:
        extra = [column(t, f) for t in tasks for f in TRAINING_FIELDS]
        wide = {model: dict(row) for model, row in rows.items()}
        for model, by_task in training.items():
            for t in tasks:
                runs = by_task.get(t) or []
                for f in TRAINING_FIELDS:
                    if runs and all(r.get(f) is not None for r in runs):
                        wide.setdefault(model, {})[column(t, f)] = [float(r[f]) for r in runs]
        _, csv, _ = results_table(wide, columns + extra, bold_best=False)
    return ReportTable(md, csv, data)


# ---------------------------------------------------------------------------------------------
# How long each run trained: best epoch, epochs run, and the runs that peaked at their cap

TRAINING_FIELDS = ("best_epoch", "epochs_run", "peaked_at_cap")  # keys of a fine-tuning result
AT_CAP = "stopped at cap, may be under-trained"
RUN_COLUMNS = ("task", "model", "seed", "train_fraction", "lr", "selection_metric", "best_val", "test",
               "best_epoch", "epochs_run", "epoch_cap", "patience", "stopped_early", "peaked_at_cap")


def reached_cap(run: Mapping[str, Any]) -> bool:
    """The run used its whole epoch budget: no early stop (its patience had not run out)."""
    return not run.get("stopped_early") and run.get("epochs_run") is not None and run.get("epochs_run") == run.get("epoch_cap")


def training_header(runs: Sequence[Mapping[str, Any]]) -> str:
    """The report header's line on training length: how many runs peaked at their epoch cap (and
    how many more used the whole budget with their best epoch before it)."""
    n, k = len(runs), sum(bool(r.get("peaked_at_cap")) for r in runs)
    more = sum(reached_cap(r) and not r.get("peaked_at_cap") for r in runs)
    caps = ", ".join(str(c) for c in sorted({r["epoch_cap"] for r in runs if r.get("epoch_cap") is not None}))
    pats = ", ".join(str(p) for p in sorted({r["patience"] for r in runs if r.get("patience") is not None}))
    setting = f"epoch cap {caps or '?'}, early-stopping patience {pats or 'none'}"
    also = (f" {more} more reached the cap before their patience ran out, best epoch earlier (marked +)."
            if more else "")
    if k == 0:
        return f"Training: none of the {n} runs peaked at its epoch cap ({setting}).{also}"
    return (f"**Training: {k} of {n} runs peaked at their epoch cap** ({setting}): their best validation epoch is "
            f"the last one allowed, {AT_CAP}; they are marked * in the training table and flagged in "
            f"runs.csv / results.json (`peaked_at_cap`).{also}")


def _epoch(x: Any) -> str:
    return "?" if x is None else f"{x:g}" if isinstance(x, float) else str(x)


def training_markdown(runs: Sequence[Mapping[str, Any]]) -> str:
    """One row per (task, model, train fraction): learning rate, cap and patience, then each seed's
    best epoch / epochs run, * marking a run that peaked at its cap, + one that used its whole
    budget with its best epoch earlier."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["task"], r["model"], r.get("train_fraction", 1.0)), []).append(r)
    lines = ["| task | model | train fraction | lr | cap / patience | best epoch / epochs run, per seed | at cap |",
             "|---|---|---:|---:|---:|---|---:|"]
    for (task, model, frac), rs in groups.items():
        lrs = ", ".join(f"{x:g}" for x in dict.fromkeys(r["lr"] for r in rs if r.get("lr") is not None))
        cap = f"{_epoch(rs[0].get('epoch_cap'))} / {_epoch(rs[0].get('patience')) if rs[0].get('patience') else '-'}"
        cells = ", ".join(f"{_epoch(r.get('best_epoch'))}/{_epoch(r.get('epochs_run'))}"
                          + ("*" if r.get("peaked_at_cap") else "+" if reached_cap(r) else "") for r in rs)
        k = sum(bool(r.get("peaked_at_cap")) for r in rs)
        lines.append(f"| {task_title(task)} | {model} | {frac:g} | {lrs} | {cap} | {cells} | "
                     f"{f'**{k} of {len(rs)}**' if k else '0'} |")
    return "\n".join(lines) + "\n"


def runs_csv(runs: Sequence[Mapping[str, Any]]) -> str:
    """One CSV row per run (`RUN_COLUMNS`): its key, learning rate, selection metric with its best
    validation and its test value, and how long it trained."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RUN_COLUMNS)
    for r in runs:
        sel = r.get("selection_metric")
        row = {**r, "best_val": (r.get("best_val") or {}).get(sel), "test": (r.get("metrics") or {}).get(sel)}
        w.writerow(["" if row.get(c) is None or (isinstance(row.get(c), float) and math.isnan(row[c]))
                    else repr(float(row[c])) if isinstance(row.get(c), float) else row[c] for c in RUN_COLUMNS])
    return buf.getvalue()


def parse_markdown_table(markdown: str) -> dict[str, dict[str, str]]:
    """`{row: {header: cell}}` of a Markdown table (for checking a report against its JSON)."""
    lines = [ln for ln in markdown.strip().splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        out[cells[0]] = dict(zip(head[1:], cells[1:]))
    return out


# ---------------------------------------------------------------------------------------------
# Generated sentences


def comparison_sentences(per_seed: Mapping[str, Mapping[str, Sequence[Mapping[str, float]]]], tasks: Sequence[str],
                         ours: str = "medm-plm", metric: str = "auroc",
                         row_names: Mapping[str, str] | None = None) -> list[str]:
    """One sentence per task saying whether `ours` beats each other model on mean `metric`
    (models named by `row_names`, the papers' names, where given).

    Every baseline that `ours` does not beat is named with both numbers; a win inside one
    standard deviation (of either model) is called out as such, not claimed as a clear win.
    """
    out = []
    name = METRIC_NAMES.get(metric, metric)
    nm = {m: (row_names or {}).get(m, m) for m in per_seed}
    for t in tasks:
        ours_runs = per_seed.get(ours, {}).get(t)
        if not ours_runs:
            continue
        m_ours, s_ours = mean_std([r[metric] for r in ours_runs])
        others = {m: mean_std([r[metric] for r in by[t]]) for m, by in per_seed.items()
                  if m != ours and by.get(t)}
        if not others:
            continue
        tn = task_title(t)
        if math.isnan(m_ours):
            out.append(f"On {tn}, {nm[ours]}'s {name} is undefined (NaN) on the test split, so no comparison is made.")
            continue
        not_beaten = sorted(((m, v) for m, v in others.items() if not m_ours > v[0]), key=lambda kv: -kv[1][0])
        if not_beaten:
            names = ", ".join(f"{nm[m]} ({format_mean_std(*v)})" for m, v in not_beaten)
            out.append(f"On {tn}, {nm[ours]} ({name} {format_mean_std(m_ours, s_ours)}) does NOT beat: {names}.")
        else:
            best, (bm, bs) = max(others.items(), key=lambda kv: kv[1][0])
            gap = 100 * (m_ours - bm)
            spread = max(x for x in (s_ours, bs) if not math.isnan(x)) if not (math.isnan(s_ours) and math.isnan(bs)) \
                else float("nan")
            note = ""
            if math.isnan(spread):
                note = " (one seed: no spread measured, so the gap's reliability is unknown)"
            elif m_ours - bm <= spread:
                note = f" -- within one standard deviation ({100 * spread:.2f}), so not a clear win"
            out.append(f"On {tn}, {nm[ours]} has the highest mean {name} ({format_mean_std(m_ours, s_ours)}), "
                       f"{gap:.2f} points above the best baseline {nm[best]} ({format_mean_std(bm, bs)}){note}.")
    return out


# ---------------------------------------------------------------------------------------------
# Files


def write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save_fig(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def plot_training_ratio(curves: Mapping[str, Mapping[float, Sequence[float]]], path: str | Path,
                        task: str, oracle: float | None = None, metric: str = "auroc") -> Path:
    """Figure 4: test `metric` vs the fraction of the training set, mean ± std band per model.

    curves[model][fraction] = [metric of each seed].
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for model, by_frac in curves.items():
        xs = sorted(by_frac)
        stats = [mean_std(by_frac[x]) for x in xs]
        m = np.array([s[0] for s in stats])
        sd = np.nan_to_num(np.array([s[1] for s in stats]))
        line, = ax.plot(xs, m, marker="o", label=model)
        ax.fill_between(xs, np.clip(m - sd, 0, 1), np.clip(m + sd, 0, 1), color=line.get_color(), alpha=0.18, linewidth=0)
    if oracle is not None and not math.isnan(oracle):
        ax.axhline(oracle, color="black", linestyle="--", linewidth=1, label="oracle (generator truth)")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(sorted({x for c in curves.values() for x in c}))
    ax.set_xlabel("fraction of the training set")
    ax.set_ylabel(f"test {METRIC_NAMES.get(metric, metric)}")
    ax.set_title(f"{task_title(task)}: {METRIC_NAMES.get(metric, metric)} vs training data "
                 "(mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = _save_fig(fig, path)
    plt.close(fig)
    return out


def plot_attention(words: Sequence[str], word_weights: Sequence[float], codes: Sequence[str],
                   code_weights: Sequence[float], path: str | Path, title: str = "", per_row: int = 12) -> Path:
    """Figure 5: heat maps of one visit's cross-modal attention.

    Top: the code [CLS] query's weights over the note's word pieces (attn_code_to_text), laid out
    `per_row` pieces per row with each piece written in its cell. Bottom: the note [CLS] query's
    weights over the visit's codes (attn_text_to_code), one labelled cell per code.
    """
    if len(words) != len(word_weights) or len(codes) != len(code_weights):
        raise ValueError("plot_attention: labels and weights differ in length")
    plt = _pyplot()
    n_rows = max(1, math.ceil(len(words) / per_row))
    grid = np.full((n_rows, per_row), np.nan)
    grid.flat[: len(words)] = np.asarray(word_weights, dtype=float)
    code_cols = max(1, len(codes))
    fig_h = 1.2 + 0.38 * n_rows + 1.3
    fig, (ax_t, ax_c) = plt.subplots(2, 1, figsize=(max(10, 0.9 * per_row), fig_h),
                                     gridspec_kw={"height_ratios": [max(n_rows, 1), 1.6]})
    im = ax_t.imshow(np.ma.masked_invalid(grid), cmap="Reds", aspect="auto", vmin=0)
    for i, w in enumerate(words):
        ax_t.text(i % per_row, i // per_row, w, ha="center", va="center", fontsize=6.5)
    ax_t.set_xticks([])
    ax_t.set_yticks([])
    ax_t.set_title("code [CLS] -> word pieces (attn_code_to_text)", fontsize=9)
    fig.colorbar(im, ax=ax_t, fraction=0.025, pad=0.01)
    cw = np.asarray(code_weights, dtype=float).reshape(1, -1) if len(codes) else np.full((1, 1), np.nan)
    im2 = ax_c.imshow(np.ma.masked_invalid(cw), cmap="Blues", aspect="auto", vmin=0)
    ax_c.set_xticks(range(code_cols))
    ax_c.set_xticklabels(list(codes) or [""], rotation=60, ha="right", fontsize=7)
    ax_c.set_yticks([])
    ax_c.set_title("note [CLS] -> codes (attn_text_to_code)", fontsize=9)
    fig.colorbar(im2, ax=ax_c, fraction=0.025, pad=0.01)
    if title:
        fig.suptitle(title, fontsize=10)
    out = _save_fig(fig, path)
    plt.close(fig)
    return out


__all__ = ["ReportTable", "table_iii", "parse_markdown_table", "comparison_sentences", "oracle_fraction",
           "plot_training_ratio", "plot_attention", "write_text", "write_json", "column", "ORACLE_ROW",
           "TABLE_METRICS", "task_title", "metric_definitions", "TRAINING_FIELDS",
           "AT_CAP", "RUN_COLUMNS", "training_header", "training_markdown", "runs_csv", "reached_cap"]
