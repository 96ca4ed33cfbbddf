"""Synthetic patients with ground truth, written in the raw MIMIC layouts (`medmm synth`).

    cohort = latent.draw_cohort(n, seed)           # latent patient/visit state (numpy)
    mimic3.write_mimic3(cohort, out, density, seed)  # raw MIMIC-III files + ground truth
    card.render(...)                                # data_card.md with the complementarity check

The vocabulary: `catalog` (the modelled diseases, drugs, labs, vitals), `codeworld` (the long
tail of real ICD-9-CM v32 diagnosis and procedure codes), `products` (the long tail of real drug
products and their ATC codes), `lab_items` (the long tail of MIMIC-III lab items). The layout:
`mimic3` (core tables), `icu_events` (transfers, services, ICU event tables, ICD dictionaries),
`notes` (discharge summaries with entity spans). `realism` measures any MIMIC-III directory
against the real demo's statistics.

`generate` runs the three and writes `out/` atomically (nothing half-written). The MIMIC-IV and
MIMIC-CXR-JPG layouts are writers over the same Cohort (`mimic4`, `mimic_cxr`), the imaging world
(`imaging`: who has which studies, what each image shows; `cxr`: pixels, reports, labels) and the
ICU course (`respiratory`: lung injury, non-invasive ventilation, the true criticality
probabilities). Format "linked" writes both, from one latent world:

    out/mimic4/        hosp/, icu/, note/, mappings/, ground_truth/   (`medmm prepare --source mimic4`)
    out/mimic-cxr/     the MIMIC-CXR-JPG tables, files/, ground_truth/ (`--source mimic-cxr`)
    out/ground_truth/  stays.parquet (true criticality probabilities per ICU stay), links.parquet
    out/data_card.md, out/sample_images.png, out/synth.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from medmm.data.io import atomic_dir

GENERATOR_VERSION = "1.0"
FORMATS = ("mimic3", "mimic4", "mimic-cxr", "linked")
IMAGE_SIZES = (64, 224)       # the range of image sizes (pixels, square)


def generate(out: str | Path, n_patients: int, seed: int, fmt: str = "mimic3", overwrite: bool = False,
             lab_density: str | float = "modest", card: bool = True, progress: bool = False,
             image_size: int = 128, openi: str | Path | None = None) -> Path:
    """Generate `n_patients` synthetic patients into `out` in raw layout `fmt`; return `out`.

    lab_density: "modest" (~350 LABEVENTS and ~50 PRESCRIPTIONS rows per admission, near the
    MIMIC-III demo's medians), "mimic" (~550 lab rows and daily prescription re-orders) or a
    positive multiplier of "modest" (see latent.Density).
    image_size: side of the synthetic X-rays (64-224 px; formats mimic-cxr and linked).
    openi: the Open-I report archive (NLMCXR_reports.tgz) to compare the synthetic reports with in
    the data card (optional).
    Same arguments -> byte-identical files.
    """
    from medmm.data.synth import card as card_mod
    from medmm.data.synth import realism
    from medmm.data.synth.latent import Density, draw_cohort
    from medmm.data.synth.mimic3 import write_mimic3

    if fmt not in FORMATS:
        raise ValueError(f"unknown synthetic format {fmt!r}; available: {', '.join(FORMATS)}")
    if not isinstance(n_patients, int) or n_patients < 1:
        raise ValueError(f"n_patients must be a positive integer, got {n_patients!r}")
    if not (isinstance(image_size, int) and IMAGE_SIZES[0] <= image_size <= IMAGE_SIZES[1]):
        raise ValueError(f"image_size must be an integer in {IMAGE_SIZES[0]}..{IMAGE_SIZES[1]}, got {image_size!r}")
    density = Density.named(lab_density)
    out = Path(out)
    t0 = time.perf_counter()
    say = (lambda m: print(f"[synth {time.perf_counter() - t0:6.1f}s] {m}", file=sys.stderr)) if progress \
        else (lambda m: None)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        cohort = draw_cohort(n_patients, seed)
        say(f"latent cohort: {cohort.n_patients:,} patients, {cohort.n_visits:,} admissions")
        if fmt != "mimic3":
            from medmm.data.synth.world import write_world
            write_world(cohort, tmp, fmt, density, seed, lab_density=lab_density, image_size=image_size,
                        card=card, openi=openi, say=say)
            return out
        frames = write_mimic3(cohort, tmp, density, seed, progress=say)
        counts = dict(zip(frames["_counts"]["table"].to_list(), frames["_counts"]["rows"].to_list()))
        meta = {"generator": "medmm synth", "generator_version": GENERATOR_VERSION, "format": fmt, "seed": seed,
                "n_patients": n_patients, "lab_density": lab_density, "counts": counts}
        comp = None
        if card:
            try:
                comp = card_mod.complementarity(frames["DIAGNOSES_ICD"].drop_nulls("ICD9_CODE"), frames["PRESCRIPTIONS"],
                                                frames["NOTEEVENTS"], frames["visits_gt"], seed=0)
            except ValueError as e:       # tiny cohorts: say so in the card rather than fail
                say(f"complementarity check skipped: {e}")
            stats = realism.mimic3_stats(tmp)
            meta["realism"] = stats
            (tmp / "data_card.md").write_text(card_mod.render(meta, counts, frames, comp) + realism_section(stats))
        if comp is not None:
            meta["complementarity"] = comp.to_json()
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        say("done")
    return out


def realism_section(stats: dict) -> str:
    """The data card's realism table: this data's statistics beside the real MIMIC-III demo's
    (and MTSamples discharge summaries' for the notes), computed by the same code."""
    from medmm.data.synth import realism

    bad = realism.out_of_range(stats)
    verdict = ("every statistic is within its target range" if not bad
               else "outside the target range: " + "; ".join(bad))
    return ("\n## Realism against the MIMIC-III demo\n\n"
            "The same code (`medmm.data.synth.realism.mimic3_stats`) on this directory and on the public "
            "MIMIC-III demo (100 patients); the demo has no notes, so note rows compare with 100 MTSamples "
            "discharge summaries. The targets are set for 2,000 patients; counts of distinct codes grow "
            "with the number of patients.\n\n"
            + realism.render_table(stats, targets=realism.TARGETS) + f"\n\nAt this size and seed {verdict}.\n")


__all__ = ["generate", "GENERATOR_VERSION"]
