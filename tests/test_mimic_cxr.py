"""MIMIC-CXR-JPG source: a tiny hand-made release (CSV tables, JPGs written by Pillow, reports) ->
canonical studies / images, checked row by row; study time parsing; labels kept as released;
the report section extractor (hand-made reports and every Open-I report); the lazy image loader;
the EHR <-> imaging link; bad input (the table in `medmm.data.sources.mimic_cxr`'s docstring)."""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import os
import re
import tarfile
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from medmm.data.images import ImageConfig, ImageLoadError, ImageSet, collate_images, load_image
from medmm.data.link import link_datasets, link_studies
from medmm.data.schema import CXR_FINDINGS, SCHEMAS, polars_schema
from medmm.data.sources import prepare
from medmm.data.sources.mimic_cxr import extract_sections, study_time_expr

META_COLS = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
             "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
             "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]
LABEL_COLS = ["subject_id", "study_id", *CXR_FINDINGS]


def _meta(dicom, subject, study, view, date, t):
    return [dicom, subject, study, "CHEST (PA AND LAT)", view, 48, 64, date, t, "CHEST (PA AND LAT)",
            "postero-anterior", "Erect"]


def _labels(subject, study, **values):
    """A label row: every finding blank except those given (by index name f0..f13 or finding)."""
    row = {f: "" for f in CXR_FINDINGS}
    row.update(values)
    return [subject, study, *[row[f] for f in CXR_FINDINGS]]


REPORT_1 = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 COMPARISON:  None.

 FINDINGS:
 
 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.

 IMPRESSION:
 
 No acute cardiopulmonary process.
"""
REPORT_2 = "impression:  Stable mild cardiomegaly.\n"

# subject 10000032: studies 50000001 (2 images) and 50000002; subject 10000764: 50000003 (no report,
# empty StudyTime); subject 11000011: 50000004 whose only JPG is missing.
TABLES = {
    "metadata": (META_COLS, [
        _meta("d1-pa", 10000032, 50000001, "PA", 21800506, "213014.531"),
        _meta("d1-lat", 10000032, 50000001, "LATERAL", 21800506, "213015.0"),
        _meta("d2-ap", 10000032, 50000002, "AP", 21800601, "84512.0"),
        _meta("d3-ap", 10000764, 50000003, "", 21320101, ""),
        _meta("d4-missing", 11000011, 50000004, "PA", 21500101, "120000"),
    ]),
    "split": (["dicom_id", "study_id", "subject_id", "split"], [
        ["d1-pa", 50000001, 10000032, "train"],
        ["d1-lat", 50000001, 10000032, "train"],
        ["d2-ap", 50000002, 10000032, "validate"],
        ["d4-missing", 50000004, 11000011, "test"],       # its image is dropped -> image_not_kept
        ["d9-nowhere", 59999999, 19999999, "test"],       # unknown_image
    ]),                                                   # d3-ap has no split row -> null
    "chexpert": (LABEL_COLS, [
        _labels(10000032, 50000001, **{"Edema": "1.0", "Atelectasis": "-1.0", "Cardiomegaly": "0.0"}),
        _labels(10000032, 50000002, **{"No Finding": "1.0"}),
        _labels(11000011, 50000004, **{"Fracture": "1.0"}),   # study_not_kept
        _labels(10000764, 59999999, **{"Edema": "0.0"}),      # unknown_study
    ]),
    "negbio": (LABEL_COLS, [
        _labels(10000032, 50000001, **{"Edema": "-1.0"}),
        _labels(10000032, 50000002, **{"No Finding": "1.0"}),
        _labels(10000764, 50000003, **{"Pneumonia": "-1.0"}),
        _labels(99999999, 50000003, **{"Edema": "1.0"}),      # study_id repeats: only valid as a bad case
    ]),
}
# the repeated negbio row above is removed in the good release (see `raw_tables`)
REPORTS = {(10000032, 50000001): REPORT_1, (10000032, 50000002): REPORT_2,
           (11000011, 50000004): "FINDINGS: fracture.", (10000764, 59999999): "IMPRESSION: unknown study."}
JPGS = {("d1-pa", 10000032, 50000001): (48, 64), ("d1-lat", 10000032, 50000001): (64, 48),
        ("d2-ap", 10000032, 50000002): (40, 40), ("d3-ap", 10000764, 50000003): (30, 50)}


def raw_tables() -> dict:
    t = copy.deepcopy(TABLES)
    t["negbio"] = (t["negbio"][0], t["negbio"][1][:3])
    return t


def jpg_rel(dicom: str, subject: int, study: int) -> str:
    return f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom}.jpg"


def report_rel(subject: int, study: int) -> str:
    return f"files/p{str(subject)[:2]}/p{subject}/s{study}.txt"


def write_release(root: Path, tables: dict | None = None, reports: dict | None = None, jpgs: dict | None = None,
                  report_root: Path | None = None, gz: bool = True) -> Path:
    tables = raw_tables() if tables is None else tables
    reports = REPORTS if reports is None else reports
    jpgs = JPGS if jpgs is None else jpgs
    root.mkdir(parents=True, exist_ok=True)
    for name, (header, rows) in tables.items():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])
        path = root / f"mimic-cxr-2.0.0-{name}.csv{'.gz' if gz else ''}"
        path.write_bytes(gzip.compress(buf.getvalue().encode(), mtime=0) if gz else buf.getvalue().encode())
    (root / "files").mkdir(exist_ok=True)
    for (dicom, subject, study), (h, w) in jpgs.items():
        p = root / jpg_rel(dicom, subject, study)
        p.parent.mkdir(parents=True, exist_ok=True)
        arr = (np.arange(h * w).reshape(h, w) % 256).astype(np.uint8)
        Image.fromarray(arr, mode="L").save(p, quality=95)
    rroot = report_root or root
    for (subject, study), text in reports.items():
        p = rroot / report_rel(subject, study)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return root


def run(tmp: Path, **kw):
    raw = write_release(tmp / "raw", **{k: v for k, v in kw.items() if k in ("tables", "reports", "jpgs", "gz")})
    opts = {k: v for k, v in kw.items() if k in ("link_ehr", "reports_dir")}
    if "reports_dir" in opts:
        opts["reports"] = opts.pop("reports_dir")
    return prepare("mimic-cxr", raw, tmp / "ds", progress=False, **opts)


def _acc(ds, name: str) -> dict:
    key = name if name == "reports" else f"mimic-cxr-2.0.0-{name}"
    return ds.manifest.accounting[key].to_json()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return run(tmp_path_factory.mktemp("cxr"))


# ---- the tiny release, row by row ------------------------------------------------------------------

def test_every_table_has_the_canonical_schema(tiny):
    for table in SCHEMAS:
        df = tiny.table(table)
        assert df.schema == polars_schema(table), table
        assert tiny.manifest.tables[table] == df.height, table
    assert tiny.manifest.source == "mimic-cxr"


def test_happy_path_counts(tiny):
    assert _acc(tiny, "metadata") == {"read": 5, "kept": 4, "dropped": {"missing_jpg": 1}}
    assert _acc(tiny, "split") == {"read": 5, "kept": 3, "dropped": {"image_not_kept": 1, "unknown_image": 1}}
    assert _acc(tiny, "chexpert") == {"read": 4, "kept": 2, "dropped": {"study_not_kept": 1, "unknown_study": 1}}
    assert _acc(tiny, "negbio") == {"read": 3, "kept": 3, "dropped": {}}
    assert _acc(tiny, "reports") == {"read": 4, "kept": 2, "dropped": {"study_not_kept": 1, "unknown_study": 1}}
    assert tiny.manifest.tables["studies"] == 3 and tiny.manifest.tables["images"] == 4
    for table in ("patients", "visits", "codes", "notes", "measurements"):
        assert tiny.manifest.tables[table] == 0
    x = tiny.manifest.extra["mimic_cxr"]
    assert x["studies_without_report"] == 1                       # 50000003: kept, counted
    assert x["images_without_study_time"] == 1 and x["images_without_split"] == 1
    assert x["studies_without_chexpert"] == 1 and x["studies_without_negbio"] == 0
    assert any("no report" in n for n in tiny.manifest.notes)


def test_images_table(tiny):
    im = tiny.table("images")
    assert im.select("image_id", "study_id", "patient_id", "view", "split").rows() == [
        ("d1-lat", 50000001, 10000032, "LATERAL", "train"),
        ("d1-pa", 50000001, 10000032, "PA", "train"),
        ("d2-ap", 50000002, 10000032, "AP", "validate"),
        ("d3-ap", 50000003, 10000764, None, None),              # blank ViewPosition, no split row
    ]
    assert im["path"][0] == "files/p10/p10000032/s50000001/d1-lat.jpg"


def test_studies_table(tiny):
    st = tiny.table("studies").sort("study_id")
    assert st["study_id"].to_list() == [50000001, 50000002, 50000003]
    assert st["patient_id"].to_list() == [10000032, 10000032, 10000764]
    assert st["study_time"].to_list() == [datetime(2180, 5, 6, 21, 30, 14, 531000),   # earliest image of the study
                                          datetime(2180, 6, 1, 8, 45, 12), datetime(2132, 1, 1)]
    assert st["report"].to_list() == [REPORT_1, REPORT_2, None]
    assert st["findings"].to_list() == [
        "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular opacities that "
        "most likely represent nipple shadows.", None, None]
    assert st["impression"].to_list() == ["No acute cardiopulmonary process.", "Stable mild cardiomegaly.", None]
    assert st["visit_id"].null_count() == 3


def test_labels_kept_as_released(tiny):
    st = tiny.table("studies").sort("study_id")
    che = st["chexpert"].to_list()
    assert che[0]["Edema"] == 1.0 and che[0]["Cardiomegaly"] == 0.0 and che[0]["Atelectasis"] == -1.0
    assert che[0]["Pneumonia"] is None                          # blank stays null, distinct from -1
    assert che[1]["No Finding"] == 1.0 and sum(v is not None for v in che[1].values()) == 1
    assert che[2] is None                                       # no chexpert row for 50000003
    neg = st["negbio"].to_list()
    assert neg[0]["Edema"] == -1.0 and neg[2]["Pneumonia"] == -1.0 and neg[2]["Edema"] is None
    assert list(che[0]) == list(CXR_FINDINGS)                   # released names, released order
    # -1 (uncertain) and null (not mentioned) are different values in every view of the data.
    flat = st.select(pl.col("chexpert").struct.field("Atelectasis"), pl.col("chexpert").struct.field("Pneumonia"))
    assert flat.row(0) == (-1.0, None)


def test_plain_csv_and_separate_reports_give_the_same_dataset(tiny, tmp_path):
    raw = write_release(tmp_path / "raw", reports={}, gz=False)
    write_release(tmp_path / "rep", tables={}, jpgs={}, reports=REPORTS)
    other = prepare("mimic-cxr", raw, tmp_path / "ds", reports=tmp_path / "rep", progress=False)
    for table in SCHEMAS:
        assert other.table(table).equals(tiny.table(table)), table
    # --reports may also name the files/ folder itself
    again = prepare("mimic-cxr", raw, tmp_path / "ds2", reports=tmp_path / "rep" / "files", progress=False)
    assert again.table("studies").equals(tiny.table("studies"))


def test_without_reports_or_label_files(tmp_path):
    t = raw_tables()
    for name in ("split", "chexpert", "negbio"):
        del t[name]
    ds = run(tmp_path, tables=t, reports={})
    st = ds.table("studies")
    assert st.height == 3 and st["report"].null_count() == 3 and st["chexpert"].null_count() == 3
    assert ds.table("images")["split"].null_count() == 4
    assert any("--reports" in n for n in ds.manifest.notes)
    assert set(ds.manifest.accounting) == {"mimic-cxr-2.0.0-metadata", "reports"}


# ---- study time ------------------------------------------------------------------------------------

def test_study_time_parsing():
    df = pl.DataFrame({"studydate": ["21800506", "21800506", "21800506", "21800506", "21800506", " 21800506 ",
                                     "21801301", "2180056", "", None, "21800506", "21800506", "21800506"],
                       "studytime": ["213014.531", "84512.0", "5.5", "120000", None, "000000.1234567",
                                     "1", "1", "1", "1", "246000", "12.3.4", "ab"]})
    e = study_time_expr()
    got = df.select(*(v.alias(k) for k, v in e.items()))
    assert got["time"].to_list()[:6] == [
        datetime(2180, 5, 6, 21, 30, 14, 531000), datetime(2180, 5, 6, 8, 45, 12),
        datetime(2180, 5, 6, 0, 0, 5, 500000), datetime(2180, 5, 6, 12), datetime(2180, 5, 6),
        datetime(2180, 5, 6, 0, 0, 0, 123456)]                   # fraction truncated to microseconds
    assert got["bad_date"].to_list() == [False] * 6 + [True] * 4 + [False] * 3   # month 13, 7 digits, empty
    assert got["bad_time"].to_list() == [False] * 10 + [True] * 3                # 24 h, two dots, letters
    assert got["no_time"].to_list() == [False] * 4 + [True] + [False] * 8


# ---- report sections ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,findings,impression", [
    (REPORT_1, "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular opacities "
               "that most likely represent nipple shadows.", "No acute cardiopulmonary process."),
    ("Findings : lungs clear.\nImpression: normal.", "lungs clear.", "normal."),          # case, space before colon
    ("FINDINGS: lungs clear. IMPRESSION: normal.", "lungs clear.", "normal."),            # one line
    ("  findings:\n\n   a\n   b  \n", "a b", None),                                       # no impression
    ("EXAMINATION: CXR\nINDICATION: cough", None, None),                                  # neither
    ("", None, None),
    (None, None, None),
    ("FINDINGS:\n\nIMPRESSION: small effusion.", None, "small effusion."),                # empty section
    ("FINDINGS AND IMPRESSION: no change.", "no change.", "no change."),
    ("FINDINGS\nclear lungs\nIMPRESSION\nnormal", "clear lungs", "normal"),               # headers alone on a line
    # mid-line and lower case: text, not a header
    ("FINDINGS: the impression: of a mass is not seen.", "the impression: of a mass is not seen.", None),
    ("IMPRESSION: one.\nADDENDUM: see below.\nIMPRESSION: two.", None, "one. two."),      # repeated: joined
    ("FINDINGS: Heart normal.\n\nCONCLUSION: nothing acute.\nRECOMMENDATION(S): none", "Heart normal.",
     "nothing acute."),
    ("FINDINGS:   PA and lateral views.  NOTIFICATION: called Dr. ___.", "PA and lateral views.", None),
])
def test_section_extractor(text, findings, impression):
    assert extract_sections(text) == {"findings": findings, "impression": impression}


@pytest.fixture(scope="module")
def open_i_reports():
    shared = os.environ.get("MEDMM_SHARED_DATA")
    if not shared:
        pytest.skip("MEDMM_SHARED_DATA is not set (the Open-I reports live in the shared data)")
    path = Path(shared) / "text" / "NLMCXR_reports.tgz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    out = []
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if not (m.isfile() and m.name.endswith(".xml")):
                continue
            root = ET.fromstring(tar.extractfile(m).read())
            sections = [(a.get("Label"), (a.text or "").strip()) for a in root.iter("AbstractText")]
            out.append((m.name, sections))
    return out


# An upper-case header inside a section's own text (Open-I 2415's IMPRESSION holds a whole second report).
_EMBEDDED = re.compile(r"\b(FINDINGS|IMPRESSION|COMPARISON|INDICATION)\s*:")


@pytest.mark.parametrize("sep", ["\n\n", " "])
def test_section_extractor_on_every_open_i_report(sep, open_i_reports):
    """Open-I's XML gives each section separately: join them into plain text, as MIMIC-CXR's report
    files are, and recover FINDINGS and IMPRESSION exactly (whitespace collapsed) for every report."""
    reports = open_i_reports
    assert len(reports) == 3955
    n_find = n_imp = 0
    bad, embedded = [], []
    for name, sections in reports:
        text = sep.join(f"{label}: {body}" for label, body in sections)
        want = {k: (" ".join(dict(sections).get(k.upper(), "").split()) or None) for k in ("findings", "impression")}
        got = extract_sections(text)
        n_find += want["findings"] is not None
        n_imp += want["impression"] is not None
        if got == want:
            continue
        if any(_EMBEDDED.search(body) for _, body in sections):
            # The plain text then reads as repeated sections, which is what the extractor must say:
            # each section starts with the text before the embedded header.
            embedded.append(name)
            for k, w in want.items():
                head = _EMBEDDED.split(w)[0].strip() if w else None
                assert (got[k] or "").startswith(head or ""), (name, k, got[k])
        else:
            bad.append((name, want, got))
    assert not bad, f"{len(bad)} reports differ, e.g. {bad[:3]}"
    assert embedded == ["ecgen-radiology/2415.xml"]    # the only one not recovered verbatim
    assert (n_find, n_imp) == (3425, 3921)          # most have both sections; some lack one (or both)


# ---- the image loader ----------------------------------------------------------------------------------

def test_load_image_gray_resized_normalised(tiny, tmp_path):
    root = tiny.path.parent / "raw"
    im = tiny.table("images")
    x = load_image(root / im["path"][0], ImageConfig(size=32))
    assert x.shape == (32, 32) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    y = load_image(root / im["path"][0], ImageConfig(size=(16, 24), resize="stretch", mean=0.5, std=0.5))
    assert y.shape == (16, 24) and y.min() >= -1.0 - 1e-6 and y.max() <= 1.0 + 1e-6
    rgb = tmp_path / "rgb.png"
    Image.new("RGB", (10, 20), (255, 0, 0)).save(rgb)            # colour input -> one gray channel
    z = load_image(rgb, ImageConfig(size=8))
    assert z.shape == (8, 8) and np.allclose(z, 76 / 255, atol=1e-6)   # Pillow's L of pure red
    with pytest.raises(ValueError, match="resize"):
        ImageConfig(resize="pad")


def test_image_set_and_collate(tiny):
    root = tiny.path.parent / "raw"
    ds = ImageSet(root, tiny.table("images"), ImageConfig(size=16))
    assert len(ds) == 4
    batch = collate_images([ds[i] for i in range(len(ds))])
    assert batch["image"].shape == (4, 1, 16, 16) and batch["skipped"] == []
    assert batch["study_id"].tolist() == [50000001, 50000001, 50000002, 50000003]


def test_corrupt_jpg_at_load_time_is_an_error_or_a_counted_skip(tiny, tmp_path):
    import shutil

    root = tmp_path / "raw"
    shutil.copytree(tiny.path.parent / "raw", root)
    im = tiny.table("images")
    bad = root / im["path"][1]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])                       # truncated JPEG
    garbage = root / im["path"][2]
    garbage.write_bytes(b"not a jpeg at all")
    cfg = ImageConfig(size=16)
    with pytest.raises(ImageLoadError, match=re.escape(str(bad))):
        load_image(bad, cfg)
    with pytest.raises(ImageLoadError, match=re.escape(str(garbage))):
        load_image(garbage, cfg)
    with pytest.raises(ImageLoadError, match=re.escape(str(garbage))):
        ImageSet(root, im, cfg)[2]
    skip = ImageSet(root, im, cfg, on_error="skip")
    batch = collate_images([skip[i] for i in range(len(skip))])
    assert batch["image"].shape == (2, 1, 16, 16)
    assert [i for i, _ in batch["skipped"]] == ["d1-pa", "d2-ap"]
    assert str(bad) in batch["skipped"][0][1]
    (root / im["path"][0]).unlink()                               # deleted after prepare
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(root / im["path"][0], cfg)


# ---- the link step -------------------------------------------------------------------------------------

def test_link_studies_rule():
    t = datetime(2150, 1, 1)
    visits = pl.DataFrame({"visit_id": [1, 2, 3, 4], "patient_id": [10, 10, 10, 20],
                           "admit_time": [t, t + timedelta(days=10), t + timedelta(days=12), t],
                           "discharge_time": [t + timedelta(days=5), t + timedelta(days=20),
                                              t + timedelta(days=14), t + timedelta(days=1)]})
    studies = pl.DataFrame({"study_id": [100, 101, 102, 103, 104, 105, 106],
                            "patient_id": [10, 10, 10, 10, 10, 20, 30],
                            "study_time": [t, t + timedelta(days=5), t + timedelta(days=7),     # both ends included
                                           t + timedelta(days=13), t + timedelta(days=11),      # overlap: latest admit
                                           t + timedelta(days=2), t]})
    out, c = link_studies(studies, visits)
    assert out["study_id"].to_list() == [100, 101, 102, 103, 104, 105, 106]   # input order
    assert out["visit_id"].to_list() == [1, 1, None, 3, 2, None, None]
    assert c.to_json() == {"studies": 7, "studies_linked": 4, "studies_outside_admissions": 2,
                           "studies_patient_not_in_ehr": 1, "patients_both": 2, "patients_imaging_only": 1,
                           "patients_ehr_only": 0}


@pytest.fixture(scope="module")
def ehr(tmp_path_factory):
    from medmm.data.synth import generate

    root = tmp_path_factory.mktemp("ehr")
    generate(root / "raw", n_patients=40, seed=4, card=False)
    return prepare("mimic3", root / "raw", root / "ds", mappings={"dir": root / "raw" / "mappings"},
                   progress=False, include_labs=False)


def _cxr_over_ehr(visits: pl.DataFrame) -> tuple[dict, dict, dict, dict]:
    """A release whose studies fall inside / outside the synthetic admissions, and of an absent patient."""
    v = visits.sort("patient_id", "admit_time")
    (p1, v1, a1, d1), = v.head(1).select("patient_id", "visit_id", "admit_time", "discharge_time").rows()
    last = v.filter(pl.col("patient_id") == p1).tail(1)
    inside = a1 + (d1 - a1) / 2
    after = last["discharge_time"][0] + timedelta(days=400)        # after the patient's last discharge
    p2 = 99000001                                                 # not an EHR patient
    times = {1: inside, 2: after, 3: datetime(2150, 3, 3, 3, 3, 3)}
    subj = {1: p1, 2: p1, 3: p2}
    meta = [_meta(f"d{k}", subj[k], 60000000 + k, "PA", int(times[k].strftime("%Y%m%d")),
                  times[k].strftime("%H%M%S") + ".0") for k in times]
    tables = {"metadata": (META_COLS, meta)}
    jpgs = {(f"d{k}", subj[k], 60000000 + k): (8, 8) for k in times}
    reports = {(subj[k], 60000000 + k): f"IMPRESSION: study {k}." for k in times}
    return tables, jpgs, reports, {"p1": p1, "v1": v1, "p2": p2}


def test_link_step_against_a_synthetic_ehr(ehr, tmp_path):
    tables, jpgs, reports, ids = _cxr_over_ehr(ehr.table("visits"))
    raw = write_release(tmp_path / "raw", tables=tables, jpgs=jpgs, reports=reports)
    ds = prepare("mimic-cxr", raw, tmp_path / "ds", link_ehr=ehr.path, progress=False)
    st = ds.table("studies").sort("study_id")
    assert st["visit_id"].to_list() == [ids["v1"], None, None]
    link = ds.manifest.extra["link"]
    n_ehr = ehr.table("visits")["patient_id"].n_unique()
    assert {k: link[k] for k in ("studies", "studies_linked", "studies_outside_admissions",
                                 "studies_patient_not_in_ehr", "patients_both", "patients_imaging_only",
                                 "patients_ehr_only")} == {
        "studies": 3, "studies_linked": 1, "studies_outside_admissions": 1, "studies_patient_not_in_ehr": 1,
        "patients_both": 1, "patients_imaging_only": 1, "patients_ehr_only": n_ehr - 1}
    assert link["ehr_source"] == "mimic3"
    # The same link from the two prepared datasets, after the fact.
    plain = prepare("mimic-cxr", raw, tmp_path / "plain", progress=False)
    again, counts = link_datasets(plain.path, ehr.path)
    assert again.sort("study_id")["visit_id"].to_list() == [ids["v1"], None, None]
    assert counts.studies_patient_not_in_ehr == 1


def test_cli_prepare_mimic_cxr(ehr, tmp_path, capsys):
    from medmm.cli import main

    tables, jpgs, reports, ids = _cxr_over_ehr(ehr.table("visits"))
    raw = write_release(tmp_path / "raw", tables=tables, jpgs=jpgs, reports={})
    write_release(tmp_path / "rep", tables={}, jpgs={}, reports=reports)
    rc = main(["prepare", "--source", "mimic-cxr", "--raw", str(raw), "--out", str(tmp_path / "ds"),
               "--reports", str(tmp_path / "rep"), "--link-ehr", str(ehr.path), "--quiet"])
    assert rc == 0
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert m["extra"]["link"]["studies_linked"] == 1 and m["tables"]["studies"] == 3
    assert m["extra"]["mimic_cxr"]["studies_without_report"] == 0
    rc = main(["prepare", "--source", "mimic-cxr", "--raw", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert rc == 2 and "nowhere" in capsys.readouterr().err


# ---- bad input -------------------------------------------------------------------------------------------

def _fails(tmp_path: Path, tables: dict, exc: type[Exception], *parts: str, **kw) -> str:
    with pytest.raises(exc) as e:
        run(tmp_path, tables=tables, **kw)
    msg = str(e.value)
    for p in parts:
        assert p in msg, (p, msg)
    assert not (tmp_path / "ds").exists()                         # nothing half-written
    return msg


def _set(tables: dict, name: str, row: int, col: str, value) -> dict:
    header, rows = tables[name]
    rows[row][header.index(col)] = value
    return tables


def test_unparsable_study_date(tmp_path):
    t = _set(raw_tables(), "metadata", 2, "StudyDate", 2180061)
    _fails(tmp_path, t, ValueError, "mimic-cxr-2.0.0-metadata.csv.gz", "column StudyDate", "data row 3", "'2180061'")


def test_impossible_study_date_and_empty_one(tmp_path):
    _fails(tmp_path / "a", _set(raw_tables(), "metadata", 0, "StudyDate", 21801301), ValueError,
           "column StudyDate", "data row 1", "'21801301'")
    _fails(tmp_path / "b", _set(raw_tables(), "metadata", 4, "StudyDate", None), ValueError,
           "column StudyDate", "data row 5")


def test_unparsable_study_time(tmp_path):
    _fails(tmp_path, _set(raw_tables(), "metadata", 1, "StudyTime", "25:00:00"), ValueError,
           "column StudyTime", "data row 2", "'25:00:00'")


def test_chexpert_value_outside_the_label_set(tmp_path):
    t = raw_tables()
    _set(t, "chexpert", 1, "Pleural Effusion", "2.0")
    _fails(tmp_path / "a", t, ValueError, "mimic-cxr-2.0.0-chexpert.csv.gz", "column Pleural Effusion",
           "data row 2", "'2.0'")
    t = _set(raw_tables(), "negbio", 0, "Edema", "yes")
    _fails(tmp_path / "b", t, ValueError, "mimic-cxr-2.0.0-negbio.csv.gz", "column Edema", "data row 1", "'yes'")


def test_repeated_study_in_a_label_file(tmp_path):
    t = raw_tables()
    t["negbio"] = TABLES["negbio"]
    _fails(tmp_path, t, ValueError, "mimic-cxr-2.0.0-negbio.csv.gz", "duplicate primary key 50000003",
           "data rows 3", "and 4")


def test_study_without_report_is_kept_and_counted(tmp_path):
    reports = {k: v for k, v in REPORTS.items() if k != (10000032, 50000002)}
    reports[(10000764, 50000003)] = b"\xff\xfe not utf-8"         # dropped: the study keeps no report
    ds = run(tmp_path, reports=reports)
    st = ds.table("studies").sort("study_id")
    assert st["report"].is_null().to_list() == [False, True, True]
    assert ds.manifest.extra["mimic_cxr"]["studies_without_report"] == 2
    assert _acc(ds, "reports")["dropped"] == {"invalid_utf8": 1, "study_not_kept": 1, "unknown_study": 1}


def test_rows_whose_subject_disagrees_with_the_metadata(tmp_path):
    t = _set(raw_tables(), "chexpert", 1, "subject_id", 10000764)            # study 50000002 is 10000032's
    reports = {**REPORTS, (10000764, 50000001): "IMPRESSION: filed under the wrong patient."}
    ds = run(tmp_path, tables=t, reports=reports)
    assert _acc(ds, "chexpert")["dropped"]["subject_mismatch"] == 1
    assert _acc(ds, "reports")["dropped"]["subject_mismatch"] == 1
    st = ds.table("studies").sort("study_id")
    assert st["chexpert"].is_null().to_list() == [False, True, True]
    assert st["report"][0] == REPORT_1


def test_a_second_copy_of_a_report_is_dropped(tmp_path):
    raw = write_release(tmp_path / "raw")
    copy_ = raw / "files" / "p99" / "p10000032" / "s50000002.txt"
    copy_.parent.mkdir(parents=True)
    copy_.write_text("IMPRESSION: the copy.")
    ds = prepare("mimic-cxr", raw, tmp_path / "ds", progress=False)
    assert _acc(ds, "reports")["dropped"]["duplicate_report"] == 1
    assert ds.table("studies").filter(pl.col("study_id") == 50000002)["report"].item() == REPORT_2


def test_missing_jpg_is_a_counted_drop(tmp_path):
    jpgs = {k: v for k, v in JPGS.items() if k[0] != "d1-lat"}
    ds = run(tmp_path, jpgs=jpgs)
    assert _acc(ds, "metadata") == {"read": 5, "kept": 3, "dropped": {"missing_jpg": 2}}
    assert "d1-lat" not in ds.table("images")["image_id"].to_list()
    assert ds.table("studies").height == 3                       # 50000001 keeps its PA image
    assert _acc(ds, "split")["dropped"] == {"image_not_kept": 2, "unknown_image": 1}


def test_every_jpg_of_a_study_missing_drops_the_study(tmp_path):
    jpgs = {k: v for k, v in JPGS.items() if k[2] != 50000002}
    ds = run(tmp_path, jpgs=jpgs)
    assert 50000002 not in ds.table("studies")["study_id"].to_list()
    assert _acc(ds, "reports")["dropped"]["study_not_kept"] == 2
    assert _acc(ds, "chexpert")["dropped"]["study_not_kept"] == 2


def test_one_study_two_subjects(tmp_path):
    t = _set(raw_tables(), "metadata", 1, "subject_id", 10000764)
    _fails(tmp_path, t, ValueError, "column subject_id", "study_id 50000001", "data row 1", "data row 2")


def test_repeated_dicom_id(tmp_path):
    t = _set(raw_tables(), "metadata", 2, "dicom_id", "d1-pa")
    _fails(tmp_path, t, ValueError, "column dicom_id", "duplicate primary key d1-pa", "data rows 1", "and 3")


def test_bad_split_value(tmp_path):
    _fails(tmp_path, _set(raw_tables(), "split", 2, "split", "valid"), ValueError,
           "mimic-cxr-2.0.0-split.csv.gz", "column split", "data row 3", "'valid'")


def test_non_integer_study_id(tmp_path):
    _fails(tmp_path, _set(raw_tables(), "metadata", 3, "study_id", "s50000003"), ValueError,
           "column study_id", "data row 4")


def test_missing_metadata_file_and_files_folder(tmp_path):
    raw = write_release(tmp_path / "raw")
    (raw / "mimic-cxr-2.0.0-metadata.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="mimic-cxr-2.0.0-metadata"):
        prepare("mimic-cxr", raw, tmp_path / "ds", progress=False)
    raw2 = write_release(tmp_path / "raw2", jpgs={}, reports={})
    import shutil

    shutil.rmtree(raw2 / "files")
    with pytest.raises(FileNotFoundError, match="files/"):
        prepare("mimic-cxr", raw2, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_missing_column(tmp_path):
    t = raw_tables()
    header, rows = t["metadata"]
    i = header.index("StudyDate")
    t["metadata"] = ([h for j, h in enumerate(header) if j != i],
                     [[v for j, v in enumerate(r) if j != i] for r in rows])
    _fails(tmp_path, t, ValueError, "missing column(s) ['STUDYDATE']")


def test_unknown_option_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not take option"):
        prepare("mimic-cxr", tmp_path, tmp_path / "ds", note_dir=tmp_path)
