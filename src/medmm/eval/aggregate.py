"""Repeated seeds -> mean (std) -> report tables.

Both papers report each metric as the mean over 5 seeds with the standard deviation in brackets,
in percent with two decimals ("74.70 (0.50)"). The helpers here do exactly that and nothing
more: ``summarize`` for one model's runs, ``format_mean_std`` for one cell and ``results_table``
for a whole table in Markdown (to read), CSV (to load in a spreadsheet) and a JSON-able dict
(to keep with the run).

The standard deviation is the sample one (ddof = 1), the usual choice when 5 seeds estimate the
spread of a training procedure. With a single run it is undefined and reported as NaN (printed
"-"), never as 0, which would claim a spread of zero that was not measured. A NaN metric in any
run (e.g. AUROC on a split with one class) makes the mean NaN: it is shown, not dropped.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std with ddof=1) of a list of numbers; std is NaN for a single value."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"mean_std: expected a non-empty list of numbers, got shape {x.shape}")
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return mean, std


def summarize(runs: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and sample std (ddof=1) of every metric over runs (one dict per seed).

    All runs must report the same metrics: a metric missing from one seed would silently average
    over fewer seeds, so it raises, naming the run and the metric.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("summarize: no runs given")
    keys = list(runs[0])
    for i, run in enumerate(runs[1:], start=1):
        missing, extra = set(keys) - set(run), set(run) - set(keys)
        if missing or extra:
            raise ValueError(
                f"summarize: run {i} has different metrics from run 0 "
                f"(missing {sorted(missing)}, extra {sorted(extra)})"
            )
    out = {}
    for k in keys:
        try:
            out[k] = mean_std([float(run[k]) for run in runs])
        except (TypeError, ValueError) as e:
            raise ValueError(f"summarize: metric {k!r} is not a number in every run ({e})") from None
    return out


def format_mean_std(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    """One table cell: ``format_mean_std(0.747, 0.0031) == "74.70 (0.31)"``.

    NaN std (a single run) prints as "(-)"; a NaN mean prints as "nan".
    """
    if math.isnan(mean):
        return "nan"
    m = f"{mean * scale:.{digits}f}"
    s = "-" if math.isnan(std) else f"{std * scale:.{digits}f}"
    return f"{m} ({s})"


def results_table(
    rows: Mapping[str, Mapping[str, Sequence[float]]],
    columns: Sequence[str] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    scale: float = 100.0,
    digits: int = 2,
    bold_best: bool = True,
    row_names: Mapping[str, str] | None = None,
) -> tuple[str, str, dict]:
    """A results table from per-seed values: ``rows[model][metric] = [value per seed]``.

    columns: the metrics to show, in order (default: every metric, in order of first appearance).
    headers: display names for the Markdown header (e.g. {"auroc": "AUC%"}); default the metric.
    row_names: display names of the models in the Markdown (e.g. {"gbert": "G-BERT"}); the CSV
    and the dict keep the keys of `rows`. A model without a metric gets an empty cell. With ``bold_best`` the highest mean of each
    column is bold in the Markdown (all metrics here are higher-is-better); ties are all bold.

    Returns (markdown, csv, json-able dict):
      markdown  | Model | metric ... | with "mean (std)" cells scaled by `scale`.
      csv       model, then <metric>_mean, <metric>_std, <metric>_n per column; unscaled values
                at full precision; empty for missing or NaN.
      dict      {"columns", "scale", "rows": {model: {metric: {"mean", "std", "n", "values"}}}},
                NaN as None so that ``json.dumps`` writes valid JSON.
    """
    if not rows:
        raise ValueError("results_table: no rows (models) given")
    if columns is None:
        columns = list(dict.fromkeys(m for metrics in rows.values() for m in metrics))
    columns = list(columns)
    headers = dict(headers or {})

    stats: dict[str, dict[str, tuple[float, float, int]]] = {}
    for model, metrics in rows.items():
        stats[model] = {}
        for m in columns:
            if m not in metrics:
                continue
            values = list(metrics[m])
            if not values:
                raise ValueError(f"results_table: model {model!r}, metric {m!r} has no values")
            mean, std = mean_std(values)
            stats[model][m] = (mean, std, len(values))

    best: dict[str, float] = {}
    for m in columns:
        means = [s[m][0] for s in stats.values() if m in s and not math.isnan(s[m][0])]
        if means and len(stats) > 1:
            best[m] = max(means)

    # Markdown
    head = ["Model"] + [headers.get(m, m) for m in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|"]
    for model, st in stats.items():
        cells = [(row_names or {}).get(model, model)]
        for m in columns:
            if m not in st:
                cells.append("")
                continue
            mean, std, _ = st[m]
            cell = format_mean_std(mean, std, scale=scale, digits=digits)
            if bold_best and m in best and mean == best[m]:
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    markdown = "\n".join(lines) + "\n"

    # CSV
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model"] + [f"{m}_{part}" for m in columns for part in ("mean", "std", "n")])
    for model, st in stats.items():
        row: list[str] = [model]
        for m in columns:
            if m not in st:
                row += ["", "", ""]
                continue
            mean, std, n = st[m]
            row += [_csv_num(mean), _csv_num(std), str(n)]
        writer.writerow(row)

    # JSON-able
    data = {
        "columns": columns,
        "scale": scale,
        "rows": {
            model: {
                m: {
                    "mean": _json_num(st[m][0]),
                    "std": _json_num(st[m][1]),
                    "n": st[m][2],
                    "values": [_json_num(float(v)) for v in rows[model][m]],
                }
                for m in columns
                if m in st
            }
            for model, st in stats.items()
        },
    }
    return markdown, buf.getvalue(), data


def _csv_num(x: float) -> str:
    return "" if math.isnan(x) else repr(float(x))


def _json_num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)
