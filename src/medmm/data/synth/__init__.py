"""Synthetic patients with ground truth, written in the raw MIMIC layouts (`medmm synth`).

    cohort = latent.draw_cohort(n, seed)           # latent patient/visit state (numpy)
    mimic3.write_mimic3(cohort, out, density, seed)  # raw MIMIC-III files + ground truth
    card.render(...)                                # data_card.md with the complementarity check

`generate` runs the three and writes `out/` atomically (nothing half-written). New layouts
(MIMIC-IV, MIMIC-CXR) are new writers over the same Cohort.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from medmm.data.io import atomic_dir

GENERATOR_VERSION = "1.0"
FORMATS = ("mimic3",)


def generate(out: str | Path, n_patients: int, seed: int, fmt: str = "mimic3", overwrite: bool = False,
             lab_density: str | float = "modest", card: bool = True, progress: bool = False) -> Path:
    """Generate `n_patients` synthetic patients into `out` in raw layout `fmt`; return `out`.

    lab_density: "modest" (~100 LABEVENTS rows per admission, demo speed), "mimic" (~480 lab and
    ~80 prescription rows per admission, like MIMIC-III) or a positive multiplier of "modest".
    Same arguments -> byte-identical files.
    """
    from medmm.data.synth import card as card_mod
    from medmm.data.synth.latent import Density, draw_cohort
    from medmm.data.synth.mimic3 import write_mimic3

    if fmt not in FORMATS:
        raise ValueError(f"unknown synthetic format {fmt!r}; available: {', '.join(FORMATS)}")
    if not isinstance(n_patients, int) or n_patients < 1:
        raise ValueError(f"n_patients must be a positive integer, got {n_patients!r}")
    density = Density.named(lab_density)
    out = Path(out)
    t0 = time.perf_counter()
    say = (lambda m: print(f"[synth {time.perf_counter() - t0:6.1f}s] {m}", file=sys.stderr)) if progress \
        else (lambda m: None)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        cohort = draw_cohort(n_patients, seed)
        say(f"latent cohort: {cohort.n_patients:,} patients, {cohort.n_visits:,} admissions")
        frames = write_mimic3(cohort, tmp, density, seed, progress=say)
        counts = dict(zip(frames["_counts"]["table"].to_list(), frames["_counts"]["rows"].to_list()))
        meta = {"generator": "medmm synth", "generator_version": GENERATOR_VERSION, "format": fmt, "seed": seed,
                "n_patients": n_patients, "lab_density": lab_density, "counts": counts}
        comp = None
        if card:
            try:
                comp = card_mod.complementarity(frames["DIAGNOSES_ICD"], frames["PRESCRIPTIONS"],
                                                frames["NOTEEVENTS"], frames["visits_gt"], seed=0)
            except ValueError as e:       # tiny cohorts: say so in the card rather than fail
                say(f"complementarity check skipped: {e}")
            (tmp / "data_card.md").write_text(card_mod.render(meta, counts, frames, comp))
        if comp is not None:
            meta["complementarity"] = comp.to_json()
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        say("done")
    return out


__all__ = ["generate", "GENERATOR_VERSION"]
