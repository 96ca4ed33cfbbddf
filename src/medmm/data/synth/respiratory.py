"""Acute respiratory failure in the ICU, and the true criticality probabilities of every ICU stay.

MedCSP's ARF label (FIDDLE's definition: the first PEEP setting or ventilation start, `tasks/
criticality.py`) needs respiratory failure that starts at a time, before and after the 48-hour
prediction point. The latent model carries two routes to it:

    lung_injury_v ~ N(0.8 pneumonia + 0.6 sepsis + 0.5 resp_failure + 0.3 acuity, 1)    (hidden)
    invasive ventilation: the coded intubation (`latent._draw_orders_and_codes`), started early in
        the first ICU stay (`icu_events.ventilation`)
    non-invasive ventilation with PEEP: onset ~ Exponential(lambda_v) hours after ICU admission,
        lambda_v = exp(NIV_LOG_RATE + NIV_INJURY * lung_injury_v); it happens when the onset falls
        inside the first ICU stay and before any intubation

The lung injury is the finding that only images show well (`imaging.py` draws it as diffuse
bilateral opacity on the ICU films); the EHR sees it only through a lower SpO2 and a higher
respiratory rate (`latent.simulate_vitals`) and, at discharge, through codes it does not cause.
So images taken early in a stay carry information on late ARF that the first 48 hours of EHR data
lack, which is what MedCSP's cross-source pre-training is meant to transfer.

`stay_truth` gives, for every ICU stay, the events and the true probability of each criticality
label at T hours given the latent state (the oracle of the data card):

    ARF:    in the cohort if ICU stay >= T h and no onset before T. p = 1 if an intubation is
            scheduled after T (it always falls inside the stay), else 1 - exp(-lambda (L - T))
            (L = ICU length, known to the oracle); 0 where the layout records no ventilation
            events (MIMIC-III CareVue stays, second stays)
    shock:  onset = ICU in + L * Beta(1.3, 2.2) with probability p_shock; in the cohort if no
            onset before T; p = p_shock (1 - F(T/L)) / (1 - p_shock F(T/L)), F the Beta CDF
    mortality: in the cohort if ICU stay >= T h; p = p_death (death is at discharge, and the
            length of stay does not depend on it given the latent state)
    readmission: the admission's p_readmit_30d
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.stats import beta as beta_dist

from medmm.data.synth.icu_events import hours_td
from medmm.data.synth.latent import Cohort

NIV_LOG_RATE = -8.1        # log hourly hazard of NIV at lung_injury 0
NIV_INJURY = 1.7           # log-hazard per unit of lung injury
SHOCK_BETA = (1.3, 2.2)    # onset fraction of the ICU stay (latent._visit_round)


def niv_hazard(c: Cohort) -> np.ndarray:
    """(V,) hourly hazard of non-invasive ventilation in the first ICU stay (0 without one)."""
    return np.where(c.icu, np.exp(NIV_LOG_RATE + NIV_INJURY * c.lung_injury), 0.0)


def noninvasive(c: Cohort, vent: tuple[np.ndarray, np.ndarray], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of non-invasive ventilation per visit (NaT if none): first ICU stays whose
    exponential onset falls inside the stay and before any intubation; it lasts ~10 h, and ends at
    the intubation or the ICU discharge if those come first."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x417]))
    V = c.n_visits
    icu_h = np.where(c.icu, (c.icu_out - c.icu_in).astype("timedelta64[s]").astype(np.float64) / 3600.0, 0.0)
    onset_h = rng.exponential(1.0, V) / np.maximum(niv_hazard(c), 1e-12)
    dur_h = np.exp(rng.normal(np.log(10.0), 0.6, V))
    vent_h = np.where(np.isnat(vent[0]), np.inf, (vent[0] - c.icu_in).astype("timedelta64[s]").astype(np.float64) / 3600.0)
    has = c.icu & (onset_h < icu_h - 0.5) & (onset_h < vent_h)
    end_h = np.minimum.reduce([onset_h + dur_h, icu_h, vent_h])
    nat = np.datetime64("NaT")
    start = np.where(has, c.icu_in + hours_td(np.where(has, onset_h, 0.0)), nat).astype("datetime64[s]")
    end = np.where(has, c.icu_in + hours_td(np.where(has, end_h, 0.0)), nat).astype("datetime64[s]")
    return start, end


def _h(t: np.ndarray, t0: np.ndarray) -> np.ndarray:
    out = (t - t0).astype("timedelta64[s]").astype(np.float64) / 3600.0
    return np.where(np.isnat(t), np.nan, out)


def stay_truth(c: Cohort, vent: tuple[np.ndarray, np.ndarray], niv: tuple[np.ndarray, np.ndarray],
               recorded: np.ndarray, T: float = 48.0) -> pl.DataFrame:
    """One row per ICU stay (cohort ids, second stays included): the event times, the cohort
    membership and true probability of each label at T hours (module doc).

    recorded: (V,) bool, the admissions whose first stay's ventilation and vasopressor events the
    layout writes (MIMIC-III: MetaVision; MIMIC-IV: all).
    """
    sv, sid, t_in, t_out = c.stays()
    first = sid == c.icustay_id[sv]
    rec = recorded[sv] & first
    L = _h(t_out, t_in)
    # ARF: the first of NIV / intubation, where recorded
    niv_h, vent_h = _h(niv[0][sv], t_in), _h(vent[0][sv], t_in)
    arf_h = np.where(rec, np.fmin(niv_h, vent_h), np.nan)
    in_arf = (L >= T) & ~(arf_h < T)
    lam = niv_hazard(c)[sv]
    p_arf = np.where(rec & (vent_h > T), 1.0, np.where(rec, 1.0 - np.exp(-lam * np.maximum(L - T, 0.0)), 0.0))
    # shock
    shock_h = np.where(rec & c.shock[sv], _h(c.shock_onset[sv], t_in), np.nan)
    in_shock = (L >= T) & ~(shock_h < T)
    F = beta_dist.cdf(np.clip(T / np.maximum(L, 1e-9), 0, 1), *SHOCK_BETA)
    ps = np.where(rec, c.p_shock[sv], 0.0)
    p_shock = ps * (1 - F) / np.maximum(1 - ps * F, 1e-12)
    return pl.DataFrame({
        "icustay_id": sid, "hadm_id": c.hadm_id[sv], "subject_id": c.subject_id[c.v_patient[sv]],
        "first_stay": first, "events_recorded": rec, "icu_hours": L,
        "lung_injury": c.lung_injury[sv], "niv_hazard_per_h": lam,
        "niv_onset_h": niv_h, "vent_onset_h": vent_h, "arf_onset_h": arf_h, "shock_onset_h": shock_h,
        "died_in_hospital": c.died[sv],
        f"arf_{T:g}h_cohort": in_arf, f"p_arf_{T:g}h": np.where(in_arf, p_arf, np.nan),
        f"arf_{T:g}h": np.where(in_arf, arf_h > T, False),
        f"shock_{T:g}h_cohort": in_shock, f"p_shock_{T:g}h": np.where(in_shock, p_shock, np.nan),
        f"shock_{T:g}h": np.where(in_shock, shock_h > T, False),
        f"mortality_{T:g}h_cohort": L >= T, f"p_mortality_{T:g}h": np.where(L >= T, c.p_death[sv], np.nan),
        "p_readmit_30d": c.p_readmit_30d[sv], "readmit_30d": c.readmit_30d[sv],
    })


__all__ = ["niv_hazard", "noninvasive", "stay_truth", "NIV_LOG_RATE", "NIV_INJURY"]
