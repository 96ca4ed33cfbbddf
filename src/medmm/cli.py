"""The `medmm` console script: one thin subcommand per library function.

Each subcommand parses its arguments and calls a function the tests call directly; heavy
modules are imported only inside the handler so that `medmm --help` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _synth(a: argparse.Namespace) -> int:
    from medmm.data.synth import generate

    density = a.lab_density
    try:
        density = float(density)
    except ValueError:
        pass
    out = generate(a.out, n_patients=a.patients, seed=a.seed, fmt=a.format, overwrite=a.overwrite,
                   lab_density=density, progress=True, image_size=a.image_size, openi=a.openi)
    print(f"synthetic {a.format} dataset: {out}")
    return 0


def _prepare(a: argparse.Namespace) -> int:
    from medmm.data.sources import prepare

    options = {}
    if a.icd10_to_icd9:
        options["icd10_to_icd9"] = True
    if a.note_dir:
        options["note_dir"] = Path(a.note_dir)
    if a.reports:
        options["reports"] = Path(a.reports)
    if a.link_ehr:
        options["link_ehr"] = Path(a.link_ehr)
    ds = prepare(a.source, a.raw, a.out, mappings=_mapping_args(a), overwrite=a.overwrite,
                 progress=not a.quiet, include_labs=not a.no_labs, **options)
    from medmm.data.summary import print_summary

    print_summary(ds)
    return 0


def _features(a: argparse.Namespace) -> int:
    from medmm.data.schema import load_dataset
    from medmm.tasks.criticality import counts_lines, criticality_counts
    from medmm.tasks.timeseries import TimeSeriesConfig, build_timeseries_features

    ds = load_dataset(a.data)
    cfg = TimeSeriesConfig(T=a.T, dt=a.dt, theta1=a.theta1, theta2=a.theta2, theta_freq=a.theta_freq,
                           time_since_last=not a.no_time_since_last, split_seed=a.split_seed,
                           chunk_size=a.chunk_size)
    f = build_timeseries_features(ds, a.out, cfg, overwrite=a.overwrite, log=None if a.quiet else print)
    c = f.meta["counts"]
    print(f"time-series features: {f.path}: {c['stays']:,} stays x {f.features.shape[1]} bins x "
          f"{c['time_features']:,} features ({c['variables_kept']:,} of {c['variables_seen']:,} variables, "
          f"{c['frequent_variables']} frequent), {c['static_features']} static features")
    for line in counts_lines(criticality_counts(ds, T=a.T)):
        print(line)
    return 0


def _mapping_args(a: argparse.Namespace) -> dict[str, Path]:
    m = {}
    if a.mappings:
        m["dir"] = Path(a.mappings)
    for key in ("ndc_rxnorm", "rxnorm_atc", "drug_atc"):
        if getattr(a, key):
            m[key] = Path(getattr(a, key))
    return m


def _summary(a: argparse.Namespace) -> int:
    from medmm.data.schema import load_dataset
    from medmm.data.summary import print_summary

    print_summary(load_dataset(a.data))
    return 0


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    # The environment reaches the spawned fine-tuning workers too.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # per-checkpoint load / save bars
    hf_logging.set_verbosity_error()  # its load reports list the MLM head that text-mlm keeps on purpose
    hf_logging.disable_progress_bar()


def _pretrain(a: argparse.Namespace) -> int:
    import json

    _quiet_transformers()

    from medmm.recipes.pretrain import run
    from medmm.train.distributed import is_main_process

    summary = run(a.recipe, a.data, a.out, a.config, a.overrides, resume=a.resume)
    if is_main_process():  # under torchrun every rank returns rank 0's summary; one prints it
        print(json.dumps(summary, indent=2))
    return 0


def _experiment(a: argparse.Namespace) -> int:
    _quiet_transformers()
    if a.which == "medm-plm":
        from medmm.recipes.experiment import main_experiment

        report = main_experiment({"data": a.data, "pretrained": a.pretrained, "out": a.out, "seeds": a.seeds,
                                  "models": a.models, "tasks": a.tasks, "config": a.config,
                                  "overrides": a.overrides, "raw": a.raw, "text": a.text, "gbert": a.gbert,
                                  "ratios": a.ratios})
    else:
        from medmm.recipes.ner import main_ner

        report = main_ner({"data": a.data, "pretrained": a.pretrained, "out": a.out, "seeds": a.seeds,
                           "config": a.config, "overrides": a.overrides, "raw": a.raw, "text": a.text})
    print(f"report: {report}")
    return 0


def _demo(a: argparse.Namespace) -> int:
    from medmm.recipes.demo import run_demo

    _quiet_transformers()

    run_demo(a.out, n_patients=a.patients, seed=a.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medmm", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate a synthetic dataset in a raw MIMIC layout")
    s.add_argument("--format", default="mimic3", choices=["mimic3", "mimic4", "mimic-cxr", "linked"],
                   help="raw layout: mimic3, mimic4, mimic-cxr (MIMIC-CXR-JPG with reports), or linked "
                        "(mimic4/ and mimic-cxr/ of the same patients)")
    s.add_argument("--patients", type=int, default=2000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--lab-density", default="modest",
                   help="'modest' (demo speed), 'mimic' (MIMIC-III row density) or lab rows per admission")
    s.add_argument("--image-size", type=int, default=128, help="X-ray side in pixels, 64-224 (mimic-cxr, linked)")
    s.add_argument("--openi", help="Open-I NLMCXR_reports.tgz: compare the synthetic reports with it in the data card")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_synth)

    s = sub.add_parser("prepare", help="turn raw source files into the canonical dataset")
    s.add_argument("--source", default="mimic3", choices=["mimic3", "mimic4", "mimic-cxr"])
    s.add_argument("--raw", required=True, help="directory of the raw release files (MIMIC-IV: the one holding "
                                                "hosp/, icu/, note/; MIMIC-CXR-JPG: the one holding files/)")
    s.add_argument("--out", required=True)
    s.add_argument("--mappings", help="directory holding the drug mapping files (standard names)")
    s.add_argument("--ndc-rxnorm", dest="ndc_rxnorm", help="NDC -> RxCUI file (ndc2rxnorm_mapping.txt)")
    s.add_argument("--rxnorm-atc", dest="rxnorm_atc", help="RxCUI -> ATC file (ndc2atc_level4.csv layout)")
    s.add_argument("--drug-atc", dest="drug_atc", help="drug name -> ATC file (drug,atc_code)")
    s.add_argument("--no-labs", action="store_true", help="skip LABEVENTS/CHARTEVENTS")
    s.add_argument("--icd10-to-icd9", dest="icd10_to_icd9", action="store_true",
                   help="mimic4: map ICD-10-CM diagnoses to ICD-9-CM through the CMS GEM (off by default)")
    s.add_argument("--note-dir", dest="note_dir", help="mimic4: the MIMIC-IV-Note directory, if not RAW/note")
    s.add_argument("--reports", help="mimic-cxr: the folder holding the MIMIC-CXR reports' files/, if not RAW")
    s.add_argument("--link-ehr", dest="link_ehr", metavar="DS_EHR",
                   help="mimic-cxr: a prepared EHR dataset; link each study to the admission containing it")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_prepare)

    s = sub.add_parser("features", help="FIDDLE time-series features of every ICU stay's first T hours (the ICU "
                                        "tasks' input), and the ICU tasks' label counts at T")
    s.add_argument("--data", required=True, help="a prepared dataset directory")
    s.add_argument("--out", required=True, help="feature directory (finetune.timeseries of the ICU tasks)")
    s.add_argument("--T", type=float, default=48.0, help="hours from ICU admission (MedCSP: 48)")
    s.add_argument("--dt", type=float, default=1.0, help="bin width in hours")
    s.add_argument("--theta1", type=float, default=0.05, help="drop variables in <= theta1 of training stays")
    s.add_argument("--theta2", type=float, default=0.001, help="drop features non-zero in <= theta2 of them")
    s.add_argument("--theta-freq", dest="theta_freq", type=float, default=1.0,
                   help="frequent variables (time since last measurement): >= this many rows per bin per stay")
    s.add_argument("--no-time-since-last", dest="no_time_since_last", action="store_true")
    s.add_argument("--split-seed", dest="split_seed", type=int, default=0,
                   help="the patient split whose training stays fit the features (the tasks' finetune.split_seed)")
    s.add_argument("--chunk-size", dest="chunk_size", type=int, default=2000, help="stays per chunk")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_features)

    s = sub.add_parser("summary", help="print a prepared dataset's counts and manifest")
    s.add_argument("data")
    s.set_defaults(func=_summary)

    s = sub.add_parser("pretrain", help="pre-train a text tower (text-mlm), MedM-PLM (medm-plm) or the code-only "
                                        "G-BERT baseline (gbert)")
    s.add_argument("recipe", choices=["text-mlm", "medm-plm", "gbert"])
    s.add_argument("--data", required=True, help="a prepared dataset directory")
    s.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, model)")
    s.add_argument("--config", help="YAML recipe config (defaults: the demo configuration)")
    s.add_argument("--resume", action="store_true", help="continue exactly from OUT/checkpoints/last")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-4 text.pretrained_path=DIR")
    s.set_defaults(func=_pretrain)

    s = sub.add_parser("experiment", help="run every model on every task over seeds and write the report")
    s.add_argument("which", choices=["medm-plm", "ner"])
    s.add_argument("--data", required=True, help="a prepared dataset directory")
    s.add_argument("--pretrained", required=True, help="a pre-training run or MedM-PLM model directory")
    s.add_argument("--out", required=True)
    s.add_argument("--seeds", type=int, default=3)
    s.add_argument("--models", nargs="+", help="subset of models (default: all of Table III)")
    s.add_argument("--tasks", nargs="+", help="tasks of the registry (default: Table III's readmission, "
                                              "medication, icd_coding; also next_visit_dx)")
    s.add_argument("--ratios", nargs="+", type=float, help="training fractions for Figure 4")
    s.add_argument("--config", help="YAML experiment config")
    s.add_argument("--raw", help="the synthetic raw directory (ground truth for the oracle row)")
    s.add_argument("--text", help="the text-MLM tower directory (ClinicalBERT stand-in)")
    s.add_argument("--gbert", help="a pre-trained code-only G-BERT directory")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. finetune.train.epochs=2")
    s.set_defaults(func=_experiment)

    s = sub.add_parser("demo", help="the end-to-end demo on synthetic data")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--patients", type=int, default=2000)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_demo)
    return p


# Nothing is downloaded at run time: pretrained weights come from local directories. Hugging Face
# reads these when it is first imported, so they are set before any handler imports it; a value
# the user has set (to allow the hub on purpose) is left as it is.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def set_offline_defaults() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def main(argv: list[str] | None = None) -> int:
    set_offline_defaults()
    parser = build_parser()
    # Dotted `key=value` overrides may stand anywhere after the subcommand; argparse cannot mix
    # them with options, so they are collected from what it did not recognise.
    args, extra = parser.parse_known_args(argv)
    overrides = [x for x in extra if "=" in x and not x.startswith("-")]
    unknown = [x for x in extra if x not in overrides]
    if unknown or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if hasattr(args, "overrides"):
        args.overrides = list(args.overrides) + overrides
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        # Input errors: one clear line, no traceback. Everything else is a bug and keeps its trace.
        print(f"medmm {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
