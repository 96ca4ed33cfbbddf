"""Benchmark: DrugMapper.map_frame on ~4.7 M prescription rows and ICD-9 status on ~0.9 M rows.

Uses MEDMM_SHARED_DATA (the MIMIC-III demo tables replicated) and writes a synthetic
ndc2atc_level4.csv to a temporary directory. Prints figures; asserts nothing about time.
"""
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

from medmm.ontology.drugs import DrugMapper, read_ndc2rxnorm
from medmm.ontology.icd9 import icd9_dx_status_expr


def main() -> None:
    shared = Path(os.environ["MEDMM_SHARED_DATA"])
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rx = read_ndc2rxnorm(shared / "mappings/ndc2rxnorm_mapping.txt")
        atcs = pl.read_csv(shared / "mappings/mimic_drug_to_atc.csv.gz", infer_schema=False)["atc_code"].to_list()
        rng = random.Random(0)
        rows = [(2015, 1, ndc, r, rng.choice(atcs)[:5]) for ndc, r in rx.items() for _ in range(2)]
        pl.DataFrame(rows, schema=["YEAR", "MONTH", "NDC", "RXCUI", "ATC4"], orient="row").write_csv(d / "ndc2atc_level4.csv")
        shutil.copy(shared / "mappings/ndc2rxnorm_mapping.txt", d)
        shutil.copy(shared / "mappings/mimic_drug_to_atc.csv.gz", d)
        t = time.perf_counter()
        m = DrugMapper.from_dir(d)
        print(f"DrugMapper.from_dir: {time.perf_counter() - t:.2f} s")
    p = pl.read_csv(shared / "mimic3-demo/PRESCRIPTIONS.csv.gz", infer_schema=False).select("NDC", "DRUG")
    big = pl.concat([p] * 452)
    t = time.perf_counter()
    out = m.map_frame(big.lazy(), "NDC", "DRUG").collect()
    print(f"map_frame: {big.height:,} rows in {time.perf_counter() - t:.2f} s; coverage {m.coverage(out)}")
    dx = pl.read_csv(shared / "mimic3-demo/DIAGNOSES_ICD.csv.gz", schema_overrides={"ICD9_CODE": pl.String})
    bigdx = pl.concat([dx.select("ICD9_CODE")] * 500)
    t = time.perf_counter()
    bigdx.lazy().select(icd9_dx_status_expr("ICD9_CODE")).collect()
    print(f"icd9_dx_status_expr: {bigdx.height:,} rows in {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
