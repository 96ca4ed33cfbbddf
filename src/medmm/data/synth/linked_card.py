"""The data card of the linked synthetic world (MIMIC-IV + MIMIC-CXR-JPG from one latent cohort).

What it measures, all from the written values and the ground truth:

* counts per source and their overlap; the distance in days from each study to its patient's
  nearest admission (the share within 30 days, MedCSP's pairing window);
* per-modality logistic regression for each criticality label at 48 h, next to the oracle (the
  true probability, `respiratory.stay_truth`), on the first ICU stays that have a study in their
  first 48 h: vitals (mean / min / max / count of each vital sign charted in [0, 48) h of the stay),
  labs (mean / last of each lab from admission to 48 h into the stay), demographics (age, sex),
  the image (the stay's first film, pixels downsampled to 8 x 8), the report (its 300 most
  frequent words, present or not), EHR
  (vitals + labs + demographics), EHR + image. Five-fold cross-validated AUROC, mean and standard
  deviation over three shuffles of the folds; standardised features, L2 penalty C = 0.1;
* findings from pixels: the same linear model on the 16 x 16 pixels of up to 2,500 images (one
  shuffle of the folds), against the true finding of the image (`cxr.report_truth`): above
  chance, below the truth (AUROC 1).

`evaluate` returns the figures as a dict (saved in synth.json); `render` writes the Markdown.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from medmm.data.schema import CXR_FINDINGS
from medmm.data.synth import catalog as cat
from medmm.data.synth.latent import Cohort, Density, simulate_labs, simulate_vitals

TASKS = ("arf", "shock", "mortality")
CRIT_PIXELS = 8            # the criticality models read the film at 8 x 8 (the probes at 16 x 16)
PROBE_IMAGES = 2500        # images the pixel probes are fitted on (a fixed random subset)
T_HOURS = 48.0
C_PENALTY = 0.1
PROBE_FINDINGS = ("Cardiomegaly", "Edema", "Pleural Effusion", "Consolidation", "Lung Opacity", "Atelectasis",
                  "Pneumothorax", "Lung Lesion", "Support Devices")
DELTA_BINS = ((0.0, "inside an admission"), (1.0, "1 day"), (7.0, "7 days"), (30.0, "30 days"),
              (90.0, "90 days"), (365.0, "365 days"), (np.inf, "longer"))


def _cv_auroc(X: np.ndarray, y: np.ndarray, repeats: int = 3) -> tuple[float, float] | None:
    """Five-fold out-of-fold AUROC, mean and std over `repeats` shuffles; None below 5 positives."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y, bool)
    if y.sum() < 5 or (~y).sum() < 5:
        return None
    out = []
    for r in range(repeats):
        pred = np.zeros(len(y))
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=r).split(X, y):
            m = make_pipeline(StandardScaler(), LogisticRegression(C=C_PENALTY, solver="liblinear", max_iter=1000))
            m.fit(X[tr], y[tr])
            pred[te] = m.predict_proba(X[te])[:, 1]
        out.append(roc_auc_score(y, pred))
    return float(np.mean(out)), float(np.std(out))


def _pool(thumbs: np.ndarray, side: int) -> np.ndarray:
    """(I, s, s) thumbnails -> (I, side * side) by block means (s a multiple of side)."""
    k = thumbs.shape[1] // side
    return thumbs.reshape(len(thumbs), side, k, side, k).mean((2, 4)).reshape(len(thumbs), -1)


def _fill(X: np.ndarray) -> np.ndarray:
    """Missing values -> the column mean (0 for an empty column), plus nothing else."""
    X = np.asarray(X, np.float64)
    mean = np.nanmean(np.where(np.isnan(X).all(0), 0.0, X), axis=0) if X.size else np.zeros(X.shape[1])
    return np.where(np.isnan(X), mean, X)


def ehr_features(c: Cohort, density: Density, seed: int, visits: np.ndarray, T: float = T_HOURS) -> dict[str, np.ndarray]:
    """Per first ICU stay of `visits`: the vitals, labs and demographics matrices (module doc)."""
    n = len(visits)
    row = np.full(c.n_visits, -1)
    row[visits] = np.arange(n)
    X = simulate_vitals(c, density, seed)
    keep = (row[X["visit"]] >= 0) & (X["icustay_id"] == c.icustay_id[X["visit"]]) & (X["hours"] < T)
    df = pl.DataFrame({"r": row[X["visit"][keep]], "k": X["vital"][keep], "x": X["value"][keep]})
    Vn = len(cat.VITALS)
    vit = np.full((n, Vn, 4), np.nan)
    g = df.group_by("r", "k").agg(pl.col("x").mean().alias("mean"), pl.col("x").min().alias("min"),
                                  pl.col("x").max().alias("max"), pl.len().cast(pl.Float64).alias("n"))
    r, k = g["r"].to_numpy(), g["k"].to_numpy()
    for j, col in enumerate(("mean", "min", "max", "n")):
        vit[r, k, j] = g[col].to_numpy()
    L = simulate_labs(c, density, seed)
    end_h = (c.icu_in - c.admit).astype("timedelta64[s]").astype(np.float64) / 3600.0 + T
    keep = (row[L["visit"]] >= 0) & L["inpatient"] & (L["hours"] < end_h[L["visit"]])
    df = pl.DataFrame({"r": row[L["visit"][keep]], "k": L["lab"][keep], "t": L["hours"][keep],
                       "x": L["value"][keep]}).sort("r", "k", "t")
    g = df.group_by("r", "k").agg(pl.col("x").mean().alias("mean"), pl.col("x").last().alias("last"))
    lab = np.full((n, len(cat.LABS), 2), np.nan)
    r, k = g["r"].to_numpy(), g["k"].to_numpy()
    lab[r, k, 0], lab[r, k, 1] = g["mean"].to_numpy(), g["last"].to_numpy()
    demo = np.stack([c.age[visits], c.male[c.v_patient[visits]].astype(float)], 1)
    return {"vitals": _fill(vit.reshape(n, -1)), "labs": _fill(lab.reshape(n, -1)), "demographics": demo}


def _report_matrix(texts: list[str]) -> np.ndarray:
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(binary=True, min_df=3, max_features=300).fit_transform(texts).toarray().astype(np.float64)


def evaluate(c: Cohort, density: Density, seed: int, truth: pl.DataFrame, studies: pl.DataFrame,
             images: pl.DataFrame, thumbs: np.ndarray, texts: list[str], T: float = T_HOURS,
             criticality: bool = True) -> dict[str, Any]:
    """The card's figures. truth: `respiratory.stay_truth` (cohort ids); studies / images: the
    ground-truth frames of `mimic_cxr.write_mimic_cxr` plus the study's cohort ``hadm_cohort``.
    criticality: False when the EHR is not written (format "mimic-cxr")."""
    out: dict[str, Any] = {"pixel_probe": _pixel_probe(images, thumbs)}
    # ---- ΔT
    s_ehr = studies.filter(pl.col("in_ehr"))
    d = s_ehr["delta_days"].to_numpy()
    lo = -np.inf
    bins = []
    for hi, name in DELTA_BINS:
        bins.append({"up_to": name, "studies": int(((d > lo) & (d <= hi)).sum()) if hi else int((d == 0).sum())})
        lo = hi
    out["delta_t"] = {"studies_of_ehr_patients": int(len(d)), "within_30_days": float((d <= 30).mean()) if len(d) else None,
                      "bins": bins}
    if not criticality:
        return out
    # ---- the stays with a study in their first T hours
    first = truth.filter(pl.col("first_stay"))
    icu_in = dict(zip(c.icustay_id[c.icu].tolist(), c.icu_in[c.icu].astype("datetime64[us]").tolist()))
    st = studies.with_row_index("study_row").filter(pl.col("hadm_cohort").is_not_null())
    st = st.join(first.select(pl.col("hadm_id").alias("hadm_cohort"), "icustay_id"), on="hadm_cohort")
    st = st.with_columns(pl.col("icustay_id").replace_strict(icu_in, return_dtype=pl.Datetime("us")).alias("icu_in"))
    st = st.filter((pl.col("time") >= pl.col("icu_in")) & (pl.col("time") < pl.col("icu_in") + pl.duration(hours=T)))
    st = st.sort("icustay_id", "time").unique("icustay_id", keep="first", maintain_order=True)
    first_img = images.with_row_index("image_row").group_by("study_id").agg(pl.col("image_row").first())
    st = st.join(first_img, on="study_id")
    hadm_to_visit = {int(h): i for i, h in enumerate(c.hadm_id.tolist())}
    stays = first.join(st.select("icustay_id", "study_row", "image_row"), on="icustay_id", how="left")
    visits = np.array([hadm_to_visit[int(h)] for h in stays["hadm_id"].to_list()], np.int64)
    feats = ehr_features(c, density, seed, visits, T)
    has_study = stays["study_row"].is_not_null().to_numpy()
    img_rows = stays["image_row"].fill_null(0).to_numpy()
    pix = _pool(thumbs, CRIT_PIXELS)[img_rows]
    rep_all = _report_matrix(texts) if len(texts) >= 3 else np.zeros((len(texts), 1))
    rep = rep_all[stays["study_row"].fill_null(0).to_numpy()]
    ehr = np.concatenate([feats["vitals"], feats["labs"], feats["demographics"]], 1)
    mods = {"vitals": feats["vitals"], "labs": feats["labs"], "demographics": feats["demographics"], "EHR": ehr,
            "image": pix, "report": rep, "EHR + image": np.concatenate([ehr, pix], 1)}
    crit: dict[str, Any] = {}
    from sklearn.metrics import roc_auc_score
    for task in TASKS:
        coh = stays[f"{task}_{T:g}h_cohort"].to_numpy()
        y = (stays["died_in_hospital"] if task == "mortality" else stays[f"{task}_{T:g}h"]).to_numpy().astype(bool)
        p = stays[f"p_{task}_{T:g}h"].to_numpy()
        rows = {}
        for subset, mask in (("all first stays", coh), ("with a study in the first 48 h", coh & has_study)):
            yy = y[mask]
            entry = {"stays": int(mask.sum()), "positive": int(yy.sum())}
            for name, X in mods.items():
                if subset == "all first stays" and name != "EHR":
                    continue
                entry[name] = _cv_auroc(X[mask], yy)
            entry["oracle"] = float(roc_auc_score(yy, p[mask])) if 0 < yy.sum() < len(yy) else None
            rows[subset] = entry
        crit[task] = rows
    out["criticality"] = crit
    return out


def _pixel_probe(images: pl.DataFrame, thumbs: np.ndarray) -> dict[str, Any]:
    """Each finding from 16 x 16 pixels (module doc)."""
    probe = {}
    X = thumbs.reshape(len(thumbs), -1)
    sub = np.zeros(len(X), bool)
    sub[np.random.default_rng(0).permutation(len(X))[:PROBE_IMAGES]] = True
    for f in PROBE_FINDINGS:
        t = images[f"true_{f}"].to_numpy()
        m = sub & (t != -1) & ~np.isnan(t)
        res = _cv_auroc(X[m], t[m] == 1, repeats=1)
        probe[f] = {"images": int(m.sum()), "positive": int((t[m] == 1).sum()),
                    "auroc": None if res is None else res[0]}
    return probe


def _auc(x: tuple[float, float] | None) -> str:
    return "n/a (< 5 positives)" if x is None else f"{100 * x[0]:.1f} ± {100 * x[1]:.1f}"


def _criticality_lines(crit: dict[str, Any]) -> list[str]:
    lines = ["## Criticality at 48 h: which modality predicts what", "",
             "Five-fold cross-validated logistic-regression AUROC (%, mean ± std over 3 shuffles) on the first ICU "
             "stays; oracle = the true probability given the latent state. The image is the stay's first film "
             "(8 x 8 pixels); the report is that film's text; on all first stays only the EHR model is fitted. "
             "Codes and the discharge note are left out: they are written at discharge, after the prediction "
             "time.", ""]
    mods = ["vitals", "labs", "demographics", "EHR", "image", "report", "EHR + image", "oracle"]
    lines += ["| label | stays | stays (positive) | " + " | ".join(mods) + " |",
              "|---|---|---|" + "---|" * len(mods)]
    wins = []
    for task, rows in crit.items():
        for subset, e in rows.items():
            cells = [_auc(e.get(m)) if m != "oracle" else ("n/a" if e["oracle"] is None else f"{100 * e['oracle']:.1f}")
                     for m in mods[:-1]] + [("n/a" if e["oracle"] is None else f"{100 * e['oracle']:.1f}")]
            cells = [c if (m in e or m == "oracle") else "" for c, m in zip(cells, mods)]
            lines.append(f"| {task} | {subset} | {e['stays']:,} ({e['positive']:,}) | " + " | ".join(cells) + " |")
            if subset != "all first stays" and e.get("EHR") and e.get("EHR + image"):
                wins.append((task, e["EHR + image"][0] - e["EHR"][0], e))
    lines.append("")
    for task, gain, e in wins:
        below = all(e.get(m) is None or e["oracle"] is None or e[m][0] < e["oracle"] for m in mods[:-1] if m in e)
        verdict = "beats EHR alone" if gain > 0 else "does not beat EHR alone"
        lines.append(f"* {task}: EHR + image {verdict} on the stays with an early film ({100 * gain:+.1f} points); "
                     f"every model {'stays below' if below else 'does NOT stay below'} the oracle.")
    lines.append("")
    return lines


def render(meta: dict[str, Any], figures: dict[str, Any], realism_table: str | None,
           reports: dict[str, Any] | None) -> str:
    """The Markdown data card."""
    n = meta["linked_counts"]
    lines = [
        "# Synthetic linked world: MIMIC-IV + MIMIC-CXR-JPG" if meta["format"] == "linked" else
        "# Synthetic MIMIC-CXR-JPG (the EHR side of its world is not written; its counts are the latent cohort's)", "",
        f"`medmm synth --format {meta['format']} --patients {meta['n_patients']} --seed {meta['seed']}` "
        f"(generator {meta['generator_version']}; images {meta['image_size']} px). Same arguments, same bytes.", "",
        "## Counts and overlap", "",
        "| | patients | admissions | ICU stays | studies | images |", "|---|---|---|---|---|---|",
        f"| EHR (mimic4/) | {n['ehr_patients']:,} | {n['admissions']:,} | {n['icu_stays']:,} | | |",
        f"| imaging (mimic-cxr/) | {n['imaging_patients']:,} | | | {n['studies']:,} | {n['images']:,} |",
        f"| in both | {n['both']:,} ({100 * n['both'] / max(n['ehr_patients'], 1):.1f}% of EHR patients) | | | "
        f"{n['studies_of_ehr_patients']:,} | |",
        f"| EHR only | {n['ehr_only']:,} | | | | |",
        f"| imaging only | {n['imaging_only']:,} | | | {n['studies'] - n['studies_of_ehr_patients']:,} | |", "",
        f"Views: {', '.join(f'{k} {v:,}' for k, v in n['views'].items())}.", "",
        "## Distance from each study to its patient's nearest admission", "",
        "| up to | studies |", "|---|---|",
    ]
    for b in figures["delta_t"]["bins"]:
        lines.append(f"| {b['up_to']} | {b['studies']:,} |")
    w = figures["delta_t"]["within_30_days"]
    lines += ["", f"Within 30 days (MedCSP's pairing window): {100 * w:.1f}% of the "
              f"{figures['delta_t']['studies_of_ehr_patients']:,} studies of EHR patients." if w is not None else "", ""]
    lines += _criticality_lines(figures["criticality"]) if "criticality" in figures else []
    lines += ["## Findings from pixels", "",
              "A linear probe (logistic regression on 16 x 16 pixels of up to 2,500 images, five-fold AUROC) against each "
              "image's true finding; the truth itself scores 100.", "",
              "| finding | images | positive | probe AUROC % |", "|---|---|---|---|"]
    for f, e in figures["pixel_probe"].items():
        auc = "n/a (< 5 positives)" if e["auroc"] is None else f"{100 * e['auroc']:.1f}"
        lines.append(f"| {f} | {e['images']:,} | {e['positive']:,} | {auc} |")
    lines += ["", "`sample_images.png` in this directory: a grid of sample images with their true findings.", ""]
    if reports is not None:
        lines += ["## Reports: synthetic vs real (Open-I, Indiana University)", "", _reports_table(reports), ""]
    else:
        lines += ["## Reports", "", "Not compared with real reports in this run (pass `openi=` / `--openi "
                  "NLMCXR_reports.tgz` to compare with the 3,955 Open-I reports).", ""]
    if realism_table:
        lines += ["## Realism of the MIMIC-IV layout against the MIMIC-IV demo", "", realism_table, ""]
    return "\n".join(lines)


def _reports_table(cmp: dict[str, Any]) -> str:
    syn, real = cmp["synthetic"], cmp["real"]
    keys = [k for k in syn if isinstance(syn[k], (int, float)) and k in real]
    lines = ["| statistic | real (Open-I) | synthetic |", "|---|---|---|"]
    for k in keys:
        fmt = (lambda x: f"{x:.3g}") if isinstance(syn[k], float) else (lambda x: f"{x:,}")
        lines.append(f"| {k} | {fmt(real[k])} | {fmt(syn[k])} |")
    for k, v in cmp.items():
        if k not in ("synthetic", "real") and isinstance(v, (int, float)):
            lines.append(f"| {k} | | {v:.3g} |")
    return "\n".join(lines)


def finding_captions(images: pl.DataFrame) -> list[str]:
    """One caption per image: its view and true positive findings (or "no finding")."""
    caps = []
    rows = images.select("view", *[f"true_{f}" for f in CXR_FINDINGS]).iter_rows()
    for row in rows:
        pos = [f for f, v in zip(CXR_FINDINGS, row[1:]) if v == 1 and f != "No Finding"]
        caps.append(f"{row[0]}: " + (", ".join(pos) if pos else "no finding"))
    return caps


__all__ = ["evaluate", "render", "ehr_features", "finding_captions", "TASKS"]
