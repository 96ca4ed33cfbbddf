"""The data card: what was generated, and whether the two modalities are complementary.

Complementarity check (MedM-PLM Fig. 1 made measurable): 30-day readmission, one sample per
admission with a known outcome (discharged alive), 5-fold cross-validation BY PATIENT (each
admission is scored once, by the models fitted on the other folds; the AUROCs are the mean over
the folds: one 70/30 split of 2,000 patients leaves ~70 positive test admissions, whose AUROC
moves by +-0.03 from split to split, more than the margins this check is about). Three
L2-regularised logistic regressions:

    codes  multi-hot of recorded ICD-9 diagnoses + ATC-3 of the prescriptions
    note   TF-IDF (1-2 grams) of the discharge summary
    both   the two feature blocks side by side

and the oracle: the generator's true probability p_readmit_30d on the same held-out admissions
(n_train / n_test below are per fold).
The generator is built so that AUROC(both) > max(AUROC(codes), AUROC(note)) and every model is
below the oracle (a model is never given the hidden part of the readmission logit).

The note-only oracle ranks the same admissions by the note part of the true logit
(`readmit_logit_note`: lives alone, homeless, non-adherence, no primary care, severity words, long
durations). `note_margin_recovered` is the share of that oracle's margin over chance the TF-IDF
regression reaches. The notes write those facts so that a bag of words reads them poorly
(paraphrases, negated and historical mentions, other people's facts) and a reading model has room;
the regression's AUROC also carries what the note shares with the codes (conditions, drugs), which
alone gives 0.35-0.77 of the margin at 2,000 patients, seeds 0-4 (benchmarks/bench_notes.py --floor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from medmm.data.synth import catalog as cat


@dataclass
class Complementarity:
    n_train: int
    n_test: int
    prevalence_test: float
    auroc_codes: float
    auroc_note: float
    auroc_both: float
    auroc_oracle: float
    auroc_note_oracle: float      # AUROC of the note part of the true logit alone

    @property
    def holds(self) -> bool:
        return (self.auroc_both > max(self.auroc_codes, self.auroc_note)
                and max(self.auroc_codes, self.auroc_note, self.auroc_both) < self.auroc_oracle)

    @property
    def note_margin_recovered(self) -> float:
        """(AUROC(note) - 0.5) / (AUROC(note oracle) - 0.5): the share of the note oracle's margin
        over chance that the bag-of-words regression reaches (nan if the oracle is at chance)."""
        margin = self.auroc_note_oracle - 0.5
        return (self.auroc_note - 0.5) / margin if margin > 0 else float("nan")

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()} | {
            "note_margin_recovered": round(self.note_margin_recovered, 4), "holds": self.holds}


def atc3_of_prescriptions(presc: pl.DataFrame) -> pl.DataFrame:
    """(HADM_ID, ATC3) from PRESCRIPTIONS: NDC -> RxCUI -> ATC first, drug name -> ATC otherwise
    (the two routes of the mapping files written beside the data)."""
    by_ndc = {d.ndc: cat.atc3(d.atc) for d in cat.DRUGS if d.mapped}
    by_name = {d.drug: cat.atc3(d.atc) for d in cat.DRUGS if d.atc}
    ndc = presc["NDC"].to_list()
    name = presc["DRUG"].to_list()
    atc = [by_ndc.get(n) or by_name.get(m) for n, m in zip(ndc, name)]
    return pl.DataFrame({"HADM_ID": presc["HADM_ID"], "code": pl.Series(atc, dtype=pl.String)}).drop_nulls()


MAX_PATIENTS = 4000   # the check uses at most this many patients (a seeded sample): seconds, not minutes


def complementarity(diagnoses: pl.DataFrame, prescriptions: pl.DataFrame, notes: pl.DataFrame,
                    visits_gt: pl.DataFrame, seed: int = 0, folds: int = 5,
                    max_patients: int = MAX_PATIENTS) -> Complementarity:
    """Fit the three readmission models and compare their held-out AUROC with the oracle's.

    Larger datasets are checked on a seeded sample of `max_patients` patients so the card stays
    fast; the sample is drawn before the split, so the split is still by patient.
    """
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    gt = visits_gt.filter(~pl.col("died_in_hospital")).select("HADM_ID", "SUBJECT_ID", "p_readmit_30d", "readmit_30d",
                                                              "readmit_logit_note")
    all_subj = np.unique(gt["SUBJECT_ID"].to_numpy())
    if len(all_subj) > max_patients:
        keep = np.random.default_rng([seed, 1]).choice(all_subj, max_patients, replace=False)
        gt = gt.filter(pl.col("SUBJECT_ID").is_in(keep.tolist()))
    hadm = gt["HADM_ID"]
    diagnoses = diagnoses.filter(pl.col("HADM_ID").is_in(hadm.implode()))
    prescriptions = prescriptions.filter(pl.col("HADM_ID").is_in(hadm.implode()))
    notes = notes.filter(pl.col("HADM_ID").is_in(hadm.implode()))
    codes = pl.concat([
        diagnoses.select("HADM_ID", pl.lit("D").add(pl.col("ICD9_CODE")).alias("code")),
        atc3_of_prescriptions(prescriptions).select("HADM_ID", pl.lit("M").add(pl.col("code")).alias("code")),
    ]).unique().sort("HADM_ID", "code").group_by("HADM_ID", maintain_order=True).agg("code")
    text = notes.select("HADM_ID", "TEXT")
    df = (gt.join(codes, on="HADM_ID", how="left").join(text, on="HADM_ID", how="left")
          .with_columns(pl.col("code").fill_null([]), pl.col("TEXT").fill_null(""))
          .sort("HADM_ID"))
    subjects = np.unique(df["SUBJECT_ID"].to_numpy())
    fold_of = dict(zip(np.random.default_rng(seed).permutation(subjects).tolist(),
                       np.arange(len(subjects)) % folds))
    fold = np.array([fold_of[x] for x in df["SUBJECT_ID"].to_list()])
    y = df["readmit_30d"].to_numpy().astype(int)
    if any(len(np.unique(y[fold == k])) < 2 for k in range(folds)):
        raise ValueError("complementarity check needs both outcomes in every fold; generate more patients")
    docs = [t.replace("\r", " ").replace("\n", " ").lower() for t in df["TEXT"].to_list()]
    code_lists = df["code"].to_list()
    p_true, note_logit = df["p_readmit_30d"].to_numpy(), df["readmit_logit_note"].to_numpy()

    # The notes are tokenised once (1-2 gram counts carry no label); each fold then builds its
    # TF-IDF from its training rows only, as TfidfVectorizer(ngram_range=(1, 2), min_df=3,
    # max_features=30000, sublinear_tf=True) fitted on them would: terms in >= 3 training notes,
    # the 30,000 most frequent in training, idf from training.
    counts = CountVectorizer(ngram_range=(1, 2)).fit_transform(docs).tocsc()
    scores: dict[str, list[float]] = {k: [] for k in ("codes", "note", "both", "oracle", "note_oracle")}
    for k in range(folds):
        te = fold == k
        ytr, yte = y[~te], y[te]
        cv = CountVectorizer(analyzer=lambda xs: xs, binary=True)
        Xc_tr = cv.fit_transform([c for c, t in zip(code_lists, te) if not t])
        Xc_te = cv.transform([c for c, t in zip(code_lists, te) if t])
        train_counts = counts[~te]
        df_ = np.asarray((train_counts > 0).sum(0)).ravel()
        tf_sum = np.asarray(train_counts.sum(0)).ravel()
        cols = np.flatnonzero(df_ >= 3)
        cols = np.sort(cols[np.argsort(-tf_sum[cols], kind="stable")[:30000]])
        tfidf = TfidfTransformer(sublinear_tf=True)
        Xt_tr = tfidf.fit_transform(train_counts[:, cols].tocsr())
        Xt_te = tfidf.transform(counts[te][:, cols].tocsr())

        def fit(Xtr, Xte, C):
            m = LogisticRegression(C=C, max_iter=3000)
            m.fit(Xtr, ytr)
            return float(roc_auc_score(yte, m.predict_proba(Xte)[:, 1]))

        # C chosen once for these feature scales (multi-hot 0/1; unit-norm TF-IDF rows), not per run.
        # The code block is down-weighted in "both" so that one C suits both blocks.
        scores["codes"].append(fit(Xc_tr, Xc_te, 0.1))
        scores["note"].append(fit(Xt_tr, Xt_te, 1.0))
        scores["both"].append(fit(sparse.hstack([Xc_tr * 0.3, Xt_tr]).tocsr(),
                                  sparse.hstack([Xc_te * 0.3, Xt_te]).tocsr(), 1.0))
        scores["oracle"].append(float(roc_auc_score(yte, p_true[te])))
        scores["note_oracle"].append(float(roc_auc_score(yte, note_logit[te])))
    m = {k: float(np.mean(v)) for k, v in scores.items()}
    return Complementarity(int(round(len(y) * (folds - 1) / folds)), int(round(len(y) / folds)), float(y.mean()),
                           m["codes"], m["note"], m["both"], m["oracle"], m["note_oracle"])


def render(meta: dict, counts: dict[str, int], frames: dict[str, pl.DataFrame],
           comp: Complementarity | None) -> str:
    """The Markdown data card."""
    adm = frames["ADMISSIONS"]
    gt = frames["visits_gt"]
    dx = frames["DIAGNOSES_ICD"]
    notes = frames["NOTEEVENTS"]
    ents = frames["entities"]
    per_pt = adm.group_by("SUBJECT_ID").len()
    n_multi = int((per_pt["len"] >= 2).sum())
    codes_per = dx.group_by("HADM_ID").len()["len"]
    atc = atc3_of_prescriptions(frames["PRESCRIPTIONS"]).unique()
    atc_per = atc.group_by("HADM_ID").len()["len"]
    words = notes["TEXT"].str.split(" ").list.len() if notes.height else pl.Series([0])
    vocab = len({w for t in notes["TEXT"].to_list()[:2000] for w in t.lower().split()})
    alive = gt.filter(~pl.col("died_in_hospital"))
    prev = float(alive["readmit_30d"].mean()) if alive.height else float("nan")
    p_mean = float(alive["p_readmit_30d"].mean()) if alive.height else float("nan")
    presc = frames["PRESCRIPTIONS"]
    ndc0 = int((presc["NDC"] == "0").sum())
    mapped = {d.ndc for d in cat.DRUGS if d.mapped}
    unmapped = int((~presc["NDC"].is_in(list(mapped)) & (presc["NDC"] != "0")).sum())
    lab_fmt = f"{meta['lab_density']}"
    L = []
    L.append(f"# Synthetic MIMIC-III data card\n")
    L.append(f"Generated by medmm synth {meta['generator_version']} with seed {meta['seed']}, "
             f"{meta['n_patients']:,} patients, lab density `{lab_fmt}`. Everything here is synthetic: "
             "no real patient's data. Dates are shifted into 2100-2200 as in MIMIC; patients older "
             "than 89 have a date of birth 300 years before their first admission.\n")
    L.append("## Counts\n")
    L.append("| what | count |\n|---|---|")
    L.append(f"| patients | {adm['SUBJECT_ID'].n_unique():,} |")
    L.append(f"| admissions | {adm.height:,} |")
    L.append(f"| patients with >= 2 admissions | {n_multi:,} ({n_multi / max(per_pt.height, 1):.1%}) |")
    L.append(f"| in-hospital deaths | {int(gt['died_in_hospital'].sum()):,} |")
    L.append(f"| admissions with an ICU stay | {int(gt['icu'].sum()):,} |")
    for name, n in counts.items():
        L.append(f"| rows in {name} | {n:,} |")
    L.append("")
    L.append("## Codes and notes\n")
    L.append(f"* Recorded ICD-9 diagnosis codes per admission: mean {codes_per.mean():.2f}, "
             f"distinct codes {dx['ICD9_CODE'].n_unique()}; true conditions per admission: mean "
             f"{gt['true_icd9'].list.len().mean():.2f} (codes are incomplete by design).")
    L.append(f"* ATC-3 classes per admission: mean {atc_per.mean():.2f}, distinct {atc['code'].n_unique()}.")
    L.append(f"* Prescription rows coded only by name: NDC \"0\" {ndc0:,} ({ndc0 / max(presc.height, 1):.1%}), "
             f"NDC absent from the mapping {unmapped:,} ({unmapped / max(presc.height, 1):.1%}).")
    L.append(f"* Discharge summaries: {notes.height:,}; length in words mean {words.mean():.0f} "
             f"(min {words.min()}, max {words.max()}); vocabulary (first 2,000 notes, whitespace tokens, "
             f"lower-cased) {vocab:,}.")
    lab_counts = ents.group_by("label").len().sort("label")
    L.append("* Entity mentions (ground_truth/entities.parquet): "
             + ", ".join(f"{r['label']} {r['len']:,}" for r in lab_counts.iter_rows(named=True)) + ".")
    L.append("")
    L.append("## 30-day readmission\n")
    L.append(f"* Admissions discharged alive: {alive.height:,}; realised 30-day readmission prevalence "
             f"{prev:.1%}; mean true probability {p_mean:.1%}.")
    L.append("* Label: the next admission of the same patient starts within 30 days of this discharge "
             "(ground_truth/visits.parquet `readmit_30d`, drawn from `p_readmit_30d`).\n")
    L.append("### Complementarity check\n")
    if comp is None:
        L.append("Not computed (too few admissions with both outcomes).\n")
    else:
        sample = (f" (a seeded sample of {MAX_PATIENTS:,} patients)"
                  if adm["SUBJECT_ID"].n_unique() > MAX_PATIENTS else "")
        L.append(f"Logistic regression on admissions discharged alive{sample}, 5-fold cross-validation by "
                 f"patient ({comp.n_train:,} train / {comp.n_test:,} test admissions per fold, prevalence "
                 f"{comp.prevalence_test:.1%}). AUROC on the held-out admissions, mean over the folds:\n")
        L.append("| features | AUROC |\n|---|---|")
        L.append(f"| codes alone (recorded ICD-9 + ATC-3 multi-hot) | {comp.auroc_codes:.3f} |")
        L.append(f"| note alone (TF-IDF of the discharge summary) | {comp.auroc_note:.3f} |")
        L.append(f"| codes + note | {comp.auroc_both:.3f} |")
        L.append(f"| oracle (true p_readmit_30d) | {comp.auroc_oracle:.3f} |")
        L.append(f"| note-only oracle (note part of the true logit) | {comp.auroc_note_oracle:.3f} |")
        L.append("")
        verdict = "holds" if comp.holds else "DOES NOT hold"
        L.append(f"Requirement both > each alone and all < oracle: **{verdict}** at this size and seed.\n")
        L.append(f"The note-alone regression recovers {comp.note_margin_recovered:.0%} of the note-only oracle's "
                 "margin over chance (AUROC - 0.5). Its AUROC also carries what the note shares with the codes "
                 "(conditions, drugs); the note-side facts themselves are written so that a bag of words reads them "
                 "poorly (negated, historical and other people's mentions, paraphrases without the keyword).\n")
    return "\n".join(L) + "\n"
