"""The synthetic generator across many seeds: every seed writes, prepares and accounts for every row.

The generator once crashed for some seeds only: a nullable string column took its polars type from
its first value, so it failed whenever the first patient had no language recorded. A sweep of many
seeds at a small size catches that kind of failure, and names the seed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

from medmm.data.schema import load_dataset
from medmm.data.sources import prepare
from medmm.data.sources.mimic3 import ICU_EVENTS_RAW, RAW
from medmm.data.synth import generate

SEEDS = range(40)
N = 150

# output table -> the input tables whose kept rows it holds, and how to split it by input table
CODE_SYSTEMS = {"DIAGNOSES_ICD": "icd9_dx", "PROCEDURES_ICD": "icd9_proc", "PRESCRIPTIONS": "atc3"}
SOURCES = {"LABEVENTS": "lab", "CHARTEVENTS": "chart"}


def _sha256s(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("seed", SEEDS)
def test_seed_synthesises_and_prepares_with_exact_accounting(seed, tmp_path):
    raw = generate(tmp_path / "raw", n_patients=N, seed=seed, card=False)
    prepare("mimic3", raw, tmp_path / "ds", mappings={"dir": raw / "mappings"}, progress=False)
    written = json.loads((raw / "synth.json").read_text())["counts"]     # rows per file, as generated
    ds = load_dataset(tmp_path / "ds")                                   # the manifest as written to disk
    acc, tables = ds.manifest.accounting, ds.manifest.tables

    # Every raw table the generator wrote that the source reads is read, and all its rows reach
    # the reader (the core tables and the ICU event tables).
    readable = set(RAW) | set(ICU_EVENTS_RAW)
    assert set(acc) == set(written) & readable and set(RAW) <= set(acc)
    assert {t: a.read for t, a in acc.items()} == {t: written[t] for t in acc}
    assert written["PATIENTS"] == N
    # Each row read is kept or dropped for a named reason.
    unbalanced = {t: a.to_json() for t, a in acc.items() if a.kept + sum(a.dropped.values()) != a.read}
    assert unbalanced == {}

    # Output tables: the manifest's counts are the files' rows, and they are the kept input rows.
    on_disk = {t: ds.scan(t).select(pl.len()).collect().item() for t in tables}
    assert on_disk == tables
    assert tables["patients"] == acc["PATIENTS"].kept
    assert tables["visits"] == acc["ADMISSIONS"].kept
    assert tables["stays"] == acc["ICUSTAYS"].kept
    assert tables["notes"] == acc["NOTEEVENTS"].kept
    assert tables["studies"] == tables["images"] == 0
    codes = dict(ds.table("codes").group_by("system").len().iter_rows())
    assert codes == {system: acc[t].kept for t, system in CODE_SYSTEMS.items() if acc[t].kept}
    assert tables["events"] == sum(acc[t].kept for t in ICU_EVENTS_RAW if t in acc)
    measurements = dict(ds.table("measurements").group_by("source").len().iter_rows())
    assert measurements == {source: acc[t].kept for t, source in SOURCES.items() if acc[t].kept}


@pytest.mark.parametrize("seed", [3, 9])
def test_same_seed_gives_identical_files(seed, tmp_path):
    a = _sha256s(generate(tmp_path / "a", n_patients=N, seed=seed))
    b = _sha256s(generate(tmp_path / "b", n_patients=N, seed=seed))
    assert "data_card.md" in a and "ground_truth/visits.parquet" in a
    assert sorted(a) == sorted(b)
    assert [f for f in a if a[f] != b[f]] == []
