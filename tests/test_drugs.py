"""DrugMapper: NDC -> RxCUI -> ATC-3 and drug name -> ATC-3, vectorised, no fan-out, bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from medmm.ontology.drugs import DrugMapper, normalize_ndc, normalize_ndc_expr, read_ndc2rxnorm

# GAMENet layouts, written small: a Python-literal dict with u'' strings and the 'idx' counter,
# and fabkury/ndc_map's YEAR,MONTH,NDC,RXCUI,ATC4 CSV.
NDC_RXNORM = (
    "{'00904404073': u'243670', '00008084199': u'314200', '51079025520': u'', "
    "'00338001731': u'999999', '04380404073': u'243670', 'idx': 5}"
)
RXNORM_ATC = """YEAR,MONTH,NDC,RXCUI,ATC4
2015,1,00904-4040-73,243670,N02BA
2015,1,00904-4040-73,243670,B01AC
2015,1,00904-4040-73,243670,B01AC
2015,1,00008-0841-99,314200,A02BC
2015,1,00008-0841-99,314200,A01AD
"""
DRUG_ATC = """drug,atc_code
Pantoprazole,A02BC02
Furosemide,C03CA01
furosemide ,C03CA01
Heparin,B01AB01
heparin,S01XA14
heparin,B01AB01
Sodium Chloride,A12
"""


@pytest.fixture()
def mapping_dir(tmp_path: Path) -> Path:
    (tmp_path / "ndc2rxnorm_mapping.txt").write_text(NDC_RXNORM)
    (tmp_path / "ndc2atc_level4.csv").write_text(RXNORM_ATC)
    with gzip.open(tmp_path / "mimic_drug_to_atc.csv.gz", "wt") as f:
        f.write(DRUG_ATC)
    return tmp_path


def _frame() -> pl.DataFrame:
    return pl.DataFrame({
        "ndc": ["00904404073", "00008084199", "0", None, "51079025520", "00338001731", "4380404073", "12345678901", "00904404073"],
        "drug": ["Aspirin", "Pantoprazole", " FUROSEMIDE", "Heparin", "Heparin", "Unknown drug", None, "Sodium Chloride", None],
    })


def test_map_frame_routes(mapping_dir):
    m = DrugMapper.from_dir(mapping_dir)
    out = m.map_frame(_frame().lazy()).collect()
    assert out.columns == ["ndc", "drug", "atc3", "atc_route"]
    assert out["atc3"].to_list() == [
        "B01A",   # NDC -> 243670 -> {N02BA x1, B01AC x2}: majority B01A
        "A01A",   # NDC -> 314200 -> {A02BC, A01AD}: tie -> smallest A01A (NDC route wins over the name)
        "C03C",   # NDC "0" = no NDC -> name (case-insensitive, trimmed)
        "B01A",   # null NDC -> name: heparin {B01A x3 rows, S01X x1} -> B01A
        "B01A",   # NDC with empty RxCUI -> name
        None,     # RxCUI without ATC, unknown name
        "B01A",   # numeric-looking NDC missing its leading zero -> padded to 11 digits
        None,     # unknown NDC; the name's only code is ATC-2 ("A12"), which cannot give ATC-3
        "B01A",
    ]
    assert out["atc_route"].to_list() == ["ndc", "ndc", "name", "name", "name", None, "ndc", None, "ndc"]
    # input order and columns untouched
    assert out.select("ndc", "drug").equals(_frame())
    # the scalar look-up follows the same rule
    assert [m.lookup(n, d) for n, d in _frame().iter_rows()] == list(zip(out["atc3"], out["atc_route"]))


def test_no_fan_out_with_ambiguous_keys(mapping_dir):
    m = DrugMapper.from_dir(mapping_dir)
    assert m.stats["rxnorm_atc"]["keys_ambiguous"] == 2 and m.stats["drug_atc"]["keys_ambiguous"] == 1
    big = pl.concat([_frame()] * 50)
    out = m.map_frame(big).collect()
    assert out.height == big.height
    cov = m.coverage(out)
    assert cov == {
        "rows": 450, "ndc": 200, "name": 150, "unmapped": 100,
        "mapped_fraction": 350 / 450, "unmapped_fraction": 100 / 450,
    }
    assert m.coverage(big) == cov  # unmapped input is mapped first


def test_routes_can_be_absent(mapping_dir):
    names_only = DrugMapper.from_files(drug_atc=mapping_dir / "mimic_drug_to_atc.csv.gz")
    out = names_only.map_frame(_frame()).collect()
    assert out["atc_route"].to_list() == ["name" if a else None for a in out["atc3"]]
    assert out["atc3"][1] == "A02B"  # pantoprazole by name now
    half = DrugMapper.from_files(ndc_rxnorm=mapping_dir / "ndc2rxnorm_mapping.txt")
    assert half.ndc_atc3 == {} and "needs both files" in half.stats["ndc_route_disabled"]
    ndc_only = DrugMapper.from_files(mapping_dir / "ndc2rxnorm_mapping.txt", mapping_dir / "ndc2atc_level4.csv")
    out = ndc_only.map_frame(_frame(), drug_col=None).collect()
    assert out["atc_route"].drop_nulls().unique().to_list() == ["ndc"]
    with pytest.raises(ValueError, match="column 'NDC' not in the input"):
        ndc_only.map_frame(_frame(), ndc_col="NDC")
    (mapping_dir / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="none of the drug mapping files"):
        DrugMapper.from_dir(mapping_dir / "empty")


def test_ndc_normalisation():
    raw = ["00904404073", " 00904404073 ", "4380404073", "1234-5678-90", "12345-678-90", "12345-6789-1", "0", "", None]
    want = ["00904404073", "00904404073", "04380404073", "01234567890", "12345067890", "12345678901", None, None, None]
    assert [normalize_ndc(x) for x in raw] == want
    got = pl.DataFrame({"n": raw}).select(normalize_ndc_expr("n")).to_series().to_list()
    assert got == want
    ints = pl.DataFrame({"n": [4380404073, 0]}).select(normalize_ndc_expr("n")).to_series().to_list()
    assert ints == ["04380404073", None]


def test_malformed_files(tmp_path):
    bad_dict = tmp_path / "ndc2rxnorm_mapping.txt"
    bad_dict.write_text("{'00904404073': u'243670',\n '00008084199': u'314200',\n 'x': }")
    with pytest.raises(ValueError, match=r"ndc2rxnorm_mapping\.txt, line 3: not a Python dict literal"):
        read_ndc2rxnorm(bad_dict)
    bad_dict.write_text("__import__('os').system('echo no')")  # literal_eval, never eval
    with pytest.raises(ValueError, match="not a Python dict literal"):
        read_ndc2rxnorm(bad_dict)
    bad_dict.write_text("{'123': u'243670'}")
    with pytest.raises(ValueError, match="'123' is not an 11-digit NDC"):
        read_ndc2rxnorm(bad_dict)

    bad_atc = tmp_path / "drugs.csv"
    bad_atc.write_text("drug,atc_code\nAspirin,N02BA01\nFurosemide,C3CA01\n")
    with pytest.raises(ValueError, match=r"drugs\.csv, line 3, column atc_code: malformed ATC code 'C3CA01'"):
        DrugMapper.from_files(drug_atc=bad_atc)
    no_col = tmp_path / "rx.csv"
    no_col.write_text("YEAR,MONTH,NDC,RXCUI\n2015,1,x,1\n")
    (tmp_path / "ok.txt").write_text("{'00904404073': u'243670'}")
    with pytest.raises(ValueError, match=r"rx\.csv: missing column 'ATC4'"):
        DrugMapper.from_files(ndc_rxnorm=tmp_path / "ok.txt", rxnorm_atc=no_col)


def test_demo_prescriptions_by_name(shared_data):
    """~93% of MIMIC-III demo prescription rows map to ATC-3 through the drug-name file."""
    maps = shared_data / "mappings"
    stats: dict[str, int] = {}
    ndc_rx = read_ndc2rxnorm(maps / "ndc2rxnorm_mapping.txt", stats)
    assert stats["entries"] == 4204 and stats["ndc_keys"] == 4203
    assert len(ndc_rx) == stats["ndc_keys"] - stats["empty_rxcui"]
    assert all(len(k) == 11 and k.isdigit() for k in ndc_rx)

    m = DrugMapper.from_files(drug_atc=maps / "mimic_drug_to_atc.csv.gz")
    rx = pl.scan_csv(shared_data / "mimic3-demo" / "PRESCRIPTIONS.csv.gz", infer_schema=False)
    cov = m.coverage(rx, ndc_col="NDC", drug_col="DRUG")
    assert cov["rows"] == 10398 and cov["ndc"] == 0
    assert 0.90 <= cov["mapped_fraction"] <= 0.97
    assert cov["name"] + cov["unmapped"] == cov["rows"]
    out = m.map_frame(rx, ndc_col="NDC", drug_col="DRUG").collect()
    assert out["atc3"].drop_nulls().str.len_chars().unique().to_list() == [4]
