"""The latent ICU course and imaging world of the linked synthetic data (respiratory.py, imaging.py),
over several seeds and sizes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from medmm.data.synth import icu_events
from medmm.data.synth.cxr import VISUAL
from medmm.data.synth.imaging import draw_imaging, imaging_only_cohort
from medmm.data.synth.latent import draw_cohort
from medmm.data.synth.respiratory import noninvasive, stay_truth

SEEDS = (0, 1, 2, 3)


def _truth(n, seed):
    c = draw_cohort(n, seed)
    vent = icu_events.ventilation(c, seed)
    niv = noninvasive(c, vent, seed)
    return c, vent, niv, stay_truth(c, vent, niv, recorded=np.ones(c.n_visits, bool))


@pytest.mark.parametrize("n", [800, 1500])
def test_true_probabilities_are_calibrated(n):
    """Summed over seeds, the true 48-h probabilities predict the drawn label counts (within 3.5
    binomial standard deviations) for ARF and shock; both have onsets before and after 48 h."""
    for task in ("arf", "shock"):
        p_all, y_all, before, after = [], [], 0, 0
        for seed in SEEDS:
            _, _, _, t = _truth(n, seed)
            co = t.filter(pl.col(f"{task}_48h_cohort"))
            p_all.append(co[f"p_{task}_48h"].to_numpy())
            y_all.append(co[f"{task}_48h"].to_numpy())
            on = t[f"{task}_onset_h"].drop_nulls().drop_nans().to_numpy()
            before += int((on < 48).sum())
            after += int((on > 48).sum())
        p, y = np.concatenate(p_all), np.concatenate(y_all)
        assert abs(y.sum() - p.sum()) < 3.5 * np.sqrt((p * (1 - p)).sum()) + 1, (task, y.sum(), p.sum())
        assert 0.02 < y.mean() < 0.2, (task, y.mean())
        assert before > 20 and after > 20, (task, before, after)


def test_deaths_before_and_after_48h():
    c, *_ = _truth(1500, 0)
    los_h = c.los_hours()[c.died]
    assert (los_h < 48).sum() > 5 and (los_h > 48).sum() > 50


def test_lung_injury_drives_late_arf_and_niv_stays_inside_the_stay():
    c, vent, niv, t = _truth(1500, 1)
    has = ~np.isnat(niv[0])
    assert has.sum() > 50
    assert (niv[0][has] >= c.icu_in[has]).all() and (niv[1][has] <= c.icu_out[has]).all()
    assert (niv[0][has] <= niv[1][has]).all()
    v = ~np.isnat(vent[0]) & has
    assert (niv[0][v] < vent[0][v]).all()                   # NIV only before an intubation
    co = t.filter(pl.col("arf_48h_cohort"))
    hi = co["lung_injury"] > co["lung_injury"].median()
    assert co.filter(hi)["arf_48h"].mean() > 2 * co.filter(~hi)["arf_48h"].mean()


@pytest.mark.parametrize("n,seed", [(300, 0), (600, 1), (1200, 2), (1200, 3)])
def test_imaging_world_shape(n, seed):
    """~45% of EHR patients have imaging, imaging-only patients exist, studies fall inside and
    outside admissions (within and beyond 30 days), several views per study, ids are distinct."""
    c = draw_cohort(n, seed)
    only = imaging_only_cohort(n, seed)
    assert not set(only.subject_id.tolist()) & set(c.subject_id.tolist())
    w = draw_imaging(c, only, icu_events.ventilation(c, seed), icu_events.ventilation(only, seed), seed)
    s, im = w.studies, w.images
    share = s.filter("in_ehr")["subject_id"].n_unique() / n
    assert 0.36 < share < 0.56, share
    assert s.filter(~pl.col("in_ehr"))["subject_id"].n_unique() > 0.2 * n
    d = s.filter("in_ehr")["delta_days"]
    assert (d == 0).sum() > 0 and ((d > 0) & (d <= 30)).sum() > 0 and (d > 30).sum() > 0
    assert s.filter(~pl.col("in_ehr"))["hadm_id"].null_count() == s.filter(~pl.col("in_ehr")).height
    n_views = s["views"].list.len()
    assert n_views.max() >= 2 and (n_views == 1).any()
    assert im.height == int(n_views.sum())
    assert set(im["view"].unique()) <= {"PA", "AP", "LATERAL"}
    assert set(VISUAL) <= set(im.columns)


def test_findings_follow_the_latent_state():
    """Heart-failure severity enlarges the heart (also coded in the EHR), pneumonia consolidates,
    the hidden lung injury shows as diffuse opacity in ICU films."""
    from medmm.data.synth import catalog as cat

    c = draw_cohort(1500, 4)
    only = imaging_only_cohort(1500, 4)
    w = draw_imaging(c, only, icu_events.ventilation(c, 4), icu_events.ventilation(only, 4), 4)
    s = w.studies.filter(pl.col("in_ehr") & (pl.col("visit") >= 0))
    v = s["visit"].to_numpy()
    hf = c.chronic[c.v_patient[v], cat.CHRONIC_INDEX["chf"]] * c.sev[v, cat.CHRONIC_INDEX["chf"]]
    ctr = s["ctr"].to_numpy()
    assert ctr[hf >= 2].mean() > ctr[hf == 0].mean() + 0.05
    pneu = c.acute[v, cat.ACUTE_INDEX["pneumonia"]]
    assert (s["consolidation"].to_numpy()[pneu] > 0.3).mean() > 0.9
    assert (s["consolidation"].to_numpy()[~pneu] > 0.3).mean() < 0.05
    icu = (s["kind"] == "icu").to_numpy()
    r = np.corrcoef(s["diffuse_opacity"].to_numpy()[icu], c.lung_injury[v][icu])[0, 1]
    assert r > 0.8


def test_imaging_world_is_deterministic():
    def draw(seed):
        c = draw_cohort(200, seed)
        only = imaging_only_cohort(200, seed)
        return draw_imaging(c, only, icu_events.ventilation(c, seed), icu_events.ventilation(only, seed), seed)

    a, b, other = draw(5), draw(5), draw(6)
    assert a.studies.equals(b.studies) and a.images.equals(b.images)
    assert not a.studies.equals(other.studies)
