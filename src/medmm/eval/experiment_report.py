"""The MedM-PLM experiment's written outputs: report.md (Table III, the per-task detail tables,
the comparison sentences, Figures 4-5, the training table), results.csv / results.json /
and runs.csv.

report.md, results.csv and results.json are built from the finished runs only (no clock times,
no worker count), so a resumed experiment writes the same bytes as an uninterrupted one; clock
times go to the recipe's timings files. The tables and figures themselves are `medmm.eval.report`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medmm.config import to_dict
from medmm.eval import report as R


def write_outputs(out: Path, runs: list[dict], models: list[str], tasks: list[str], seeds: list[int],
                   ratios: list[float], ratio_models: list[str], cfg: Any,
                   oracle: dict[str, dict[str, float]], attention: dict | None,
                   task_data: dict[str, Any], data_dir: Any, gt: Path | None, pretraining: str = "") -> None:
    """report.md, results.csv, results.json: from the finished runs only (no clock times, no
    worker count), so a resumed experiment writes the same bytes as an uninterrupted one."""
    full = [r for r in runs if r["train_fraction"] == 1.0]
    per_seed = {m: {t: [r["metrics"] for r in full if r["model"] == m and r["task"] == t] for t in tasks}
                for m in models}
    training = {m: {t: [r for r in full if r["model"] == m and r["task"] == t] for t in tasks} for m in models}
    from medmm.models.downstream import model_title

    names = {m: model_title(m) for m in models}
    table = R.table_iii(per_seed, tasks, oracle=oracle or None, training=training, row_names=names)
    sentences = R.comparison_sentences(per_seed, tasks, ours=cfg.ours, row_names=names)

    curves = {m: {f: [r["metrics"]["auroc"] for r in runs if r["model"] == m and r["task"] == cfg.ratio_task
                      and r["train_fraction"] == f] for f in ratios} for m in ratio_models}
    curves = {m: {f: v for f, v in c.items() if v} for m, c in curves.items()}
    figs = out / "figures"
    fig_notes = []
    if curves:
        R.plot_training_ratio(curves, figs / "training_ratio.png",
                              oracle=oracle.get(cfg.ratio_task, {}).get("auroc"), task=cfg.ratio_task)
    else:
        fig_notes.append(f"Figure 4 not drawn: none of {cfg.ratio_models} was run on {cfg.ratio_task}.")
    if attention is not None:
        R.plot_attention(attention["words"], attention["word_weights"], attention["codes"],
                         attention["code_weights"], figs / "attention.png",
                         title=f"{cfg.ours}, {cfg.attention_task}: test visit {attention['visit_id']} "
                               f"(label {attention['label']:.0f}, p = {attention['prob']:.2f})")
    else:
        fig_notes.append(f"Figure 5 not drawn: no fine-tuned {cfg.ours} {cfg.attention_task} model returned "
                         "cross-modal attention.")

    md = ["# MedM-PLM experiment: Table III on this dataset", ""]
    md.append(f"Dataset: `{data_dir}`. Seeds: {', '.join(map(str, seeds))} (fixed patient split, seed "
              f"{cfg.finetune.split_seed}; the seed varies initialisation, dropout and data order). "
              "Each cell is the TEST metric of the best validation checkpoint, mean (std) over seeds, in %; "
              "std is '-' with a single seed.")
    md.append("")
    sizes = ", ".join(f"{t}: {len(td.splits['train'])}/{len(td.splits['val'])}/{len(td.splits['test'])}"
                      for t, td in task_data.items())
    md.append(f"Samples (train/val/test): {sizes}. Model selection: validation "
              + ", ".join(f"{t} {cfg.finetune.selection_metric.get(t, 'auroc')}" for t in tasks)
              + "; each column is defined below Table III.")
    md += ["", R.training_header(runs) + " Per run: the training table at the end, `runs.csv`."]
    md += ["", pretraining] if pretraining else []  # which towers were pre-trained, on what
    if cfg.budget_note:
        md += ["", cfg.budget_note]
    for t in tasks:
        if task_data[t].task.describe_samples():
            md += ["", task_data[t].task.describe_samples()]
    md += ["", "## Table III", "", table.markdown.rstrip(), ""]
    md += [f"* {d}" for d in R.metric_definitions(tasks)] + [""]
    for t, o in oracle.items():
        md.append(f"The oracle row scores {task_data[t].task.oracle_what} (Bayes-optimal ranking; AUROC "
                  f"{100 * o['auroc']:.2f}); '% of oracle margin' is (AUROC - 50) / (oracle AUROC - 50) per seed.")
        md.append("")
    if not oracle and any(task_data[t].task.oracle_column for t in tasks):
        md += ["No generator ground truth was found beside the dataset, so there is no oracle row.", ""]
    for t in tasks:
        task = task_data[t].task
        if task.detail_metrics:
            rt = R.table_iii(per_seed, [t], metrics=task.detail_metrics, row_names=names)
            md += [f"## {task.detail_heading}", "", rt.markdown.rstrip(), ""]
            md += [f"* {d}" for d in R.metric_definitions([t], task.detail_metrics)] + [""]
    if sentences:
        md += ["## How MedM-PLM compares (test AUROC)", ""] + [f"* {s}" for s in sentences] + [""]
    md += ["## Figures", ""]
    if curves:
        md.append(f"* Figure 4, `figures/training_ratio.png`: test AUROC on {cfg.ratio_task} vs the fraction "
                  f"of the training set ({', '.join(f'{f:g}' for f in ratios)}) for {', '.join(ratio_models)}.")
    if attention is not None:
        md.append(f"* Figure 5, `figures/attention.png`: cross-modal attention of the fine-tuned {cfg.ours} "
                  f"on test visit {attention['visit_id']}.")
    md += [f"* {n}" for n in fig_notes] + [""]
    md += ["## Training: epochs per run", "",
           "Each run trains until its validation selection metric has not improved for `patience` epochs, at most "
           "`cap` epochs, and keeps its best epoch's weights. A cell is best epoch / epochs run for one seed, in "
           f"seed order; * marks a run whose best epoch is its cap ({R.AT_CAP}); + a run that used every "
           "epoch of its cap before its patience ran out, its best epoch earlier; '?' a run whose validation "
           "selection metric was never defined (e.g. one class in the validation split), so no epoch was selected.", "",
           R.training_markdown(runs).rstrip(), ""]
    md += ["Timings (per run and per invocation): `timings.md`, `timings.json`.", ""]

    R.write_text(out / "report.md", "\n".join(md))
    R.write_text(out / "results.csv", table.csv)
    R.write_text(out / "runs.csv", R.runs_csv(runs))
    R.write_json(out / "results.json", {
        "table": table.data, "oracle": oracle, "comparisons": sentences,
        "training_ratio": {m: {f"{f:g}": v for f, v in c.items()} for m, c in curves.items()},
        "attention": attention, "runs": runs,
        "ground_truth": None if gt is None else str(gt),
        # `workers` is the schedule, not the science: it goes to timings.json
        "training": {"runs": len(runs), "peaked_at_cap": sum(bool(r.get("peaked_at_cap")) for r in runs),
                     "at_cap": [f"{r['model']} / {r['task']} / seed {r['seed']} / train fraction {r['train_fraction']:g}"
                                for r in runs if r.get("peaked_at_cap")]},
        # the config as a file would hold it (less what each run sets itself, see FinetuneConfig)
        "config": {k: v for k, v in to_dict(cfg).items() if k != "workers"},
        "models": models, "tasks": tasks, "seeds": seeds,
    })


__all__ = ["write_outputs"]
