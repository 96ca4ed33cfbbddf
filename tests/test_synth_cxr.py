"""Synthetic chest X-rays, reports and the CheXpert-style labeler (`medmm.data.synth.cxr`)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medmm.data.schema import CXR_FINDINGS
from medmm.data.sources.mimic_cxr import extract_sections
from medmm.data.synth import cxr


def random_findings(n: int, seed: int) -> dict[str, np.ndarray]:
    """Findings of n images / studies, each present in about a third."""
    r = np.random.default_rng(seed)
    on = lambda p: r.random(n) < p  # noqa: E731
    return {
        "ctr": r.uniform(0.40, 0.68, n), "edema": r.random(n) * on(0.3),
        "effusion_l": r.uniform(0, 0.6, n) * on(0.3), "effusion_r": r.uniform(0, 0.6, n) * on(0.3),
        "consolidation": r.random(n) * on(0.3), "consolidation_lobe": r.integers(0, 6, n),
        "diffuse_opacity": r.uniform(0, 0.7, n) * on(0.2), "atelectasis": r.random(n) * on(0.2),
        "pneumothorax": r.random(n) * on(0.1), "nodule": r.random(n) * on(0.1),
        "fracture": on(0.1).astype(np.int64), "devices": r.integers(1, 16, n) * on(0.35),
    }


def normal(n: int) -> dict[str, np.ndarray]:
    f = {k: np.zeros(n) for k in cxr.VISUAL}
    f["ctr"] = np.full(n, 0.45)
    return f


def render(f, view="PA", size=96, seed=0, keys=None):
    n = len(f["ctr"])
    keys = np.arange(n) if keys is None else keys
    return cxr.render_images(f, keys, keys, np.array([view] * n), size, seed)


# ---- images ------------------------------------------------------------------------------------

def test_jpeg_bytes_identical_across_batches_and_seeds():
    f = random_findings(12, 3)
    views = np.array(["PA", "AP", "LATERAL"] * 4)
    pk, ik = np.arange(12) // 2, np.arange(100, 112)
    per_seed = []
    for seed in (0, 1, 7):
        whole = [cxr.encode_jpeg(x) for x in cxr.render_images(f, pk, ik, views, 80, seed)]
        again = [cxr.encode_jpeg(x) for x in cxr.render_images(f, pk, ik, views, 80, seed)]
        parts = []
        for sl in (slice(7, 12), slice(0, 7)):          # other batches, other order
            parts = [cxr.encode_jpeg(x) for x in cxr.render_images({k: v[sl] for k, v in f.items()}, pk[sl], ik[sl],
                                                                 views[sl], 80, seed)] + parts
        assert whole == again == parts
        per_seed.append(whole)
    assert per_seed[0] != per_seed[1] and per_seed[1] != per_seed[2]
    img = Image.open(io.BytesIO(per_seed[0][0]))
    assert img.mode == "L" and img.size == (80, 80)


@pytest.mark.parametrize("size", [63, 225, 100.5, "128"])
def test_size_is_validated(size):
    with pytest.raises(ValueError):
        render(normal(1), size=size)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        cxr.render_images(normal(2), np.arange(2), np.arange(2), np.array(["PA", "OBLIQUE"]), 64, 0)
    with pytest.raises(ValueError):
        cxr.encode_jpeg(np.zeros((8, 8), np.float32))


@pytest.mark.parametrize("size", [64, 224])
def test_sizes_at_the_limits(size):
    (img,) = render(normal(1), size=size)
    assert img.shape == (size, size) and img.dtype == np.uint8 and 20 < img.mean() < 235


def _diff(k, value, view="PA", size=96):
    base = normal(1)
    f = {kk: v.copy() for kk, v in base.items()}
    f[k][:] = value
    a, b = render(base, view, size)[0], render(f, view, size)[0]
    return np.abs(a.astype(np.float64) - b.astype(np.float64))


def _mean(d, rows, cols):
    n = d.shape[0]
    return d[int(rows[0] * n):int(rows[1] * n), int(cols[0] * n):int(cols[1] * n)].mean()


def test_each_finding_changes_pixels_in_its_region():
    # image left = patient right
    d = _diff("effusion_l", 0.4)
    assert _mean(d, (0.55, 0.9), (0.5, 1.0)) > 5 * _mean(d, (0.55, 0.9), (0.0, 0.5)) + 1
    d = _diff("effusion_r", 0.4)
    assert _mean(d, (0.55, 0.9), (0.0, 0.5)) > 5 * _mean(d, (0.55, 0.9), (0.5, 1.0)) + 1
    d = _diff("ctr", 0.66)
    assert _mean(d, (0.5, 0.85), (0.1, 0.9)) > 2 and _mean(d, (0.0, 0.3), (0.0, 1.0)) < 0.2
    for lobe, (upper, left) in {0: (True, True), 2: (False, True), 3: (True, False), 5: (False, False)}.items():
        base = normal(1)
        f = {k: v.copy() for k, v in base.items()}
        f["consolidation"][:], f["consolidation_lobe"][:] = 0.7, lobe
        d = np.abs(render(base)[0].astype(float) - render(f)[0].astype(float))
        rows = (0.1, 0.5) if upper else (0.45, 0.85)
        same, other = ((0.0, 0.5), (0.5, 1.0)) if left else ((0.5, 1.0), (0.0, 0.5))
        assert _mean(d, rows, same) > 3 * _mean(d, rows, other) + 1, lobe
    d = _diff("edema", 0.8)
    assert _mean(d, (0.3, 0.7), (0.2, 0.8)) > 4 * _mean(d, (0.0, 0.1), (0.0, 1.0)) + 1
    d = _diff("diffuse_opacity", 0.6)
    assert _mean(d, (0.2, 0.7), (0.1, 0.9)) > 4 * _mean(d, (0.0, 0.1), (0.0, 1.0)) + 1
    d = _diff("atelectasis", 0.8)
    assert _mean(d, (0.5, 1.0), (0.0, 1.0)) > 3 * _mean(d, (0.0, 0.5), (0.0, 1.0)) + 0.1
    d = _diff("pneumothorax", 0.7)
    assert _mean(d, (0.0, 0.5), (0.0, 1.0)) > 3 * _mean(d, (0.5, 1.0), (0.0, 1.0)) + 0.1
    for k, v in (("nodule", 0.8), ("fracture", 1)):
        changed = (_diff(k, v) > 3).mean()
        assert 0.0005 < changed < 0.05, k
    ett = _diff("devices", cxr.DEVICE_ETT)
    assert _mean(ett, (0.0, 0.4), (0.42, 0.58)) > 5 * _mean(ett, (0.0, 1.0), (0.0, 0.3)) + 1
    for bit in (cxr.DEVICE_CVC, cxr.DEVICE_NG, cxr.DEVICE_PACER):
        assert (_diff("devices", bit) > 10).mean() > 0.002, bit
    for k, v in (("ctr", 0.66), ("effusion_r", 0.4), ("consolidation", 0.7), ("devices", cxr.DEVICE_ETT)):
        assert (_diff(k, v, view="LATERAL") > 3).mean() > 0.002, k


def test_linear_probe_sees_the_findings():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    n = 1000
    f = random_findings(n, 11)
    for k in ("edema", "consolidation"):        # present means visible: no values in the uncertain band
        f[k] = np.where(f[k] > 0, 0.25 + 0.75 * f[k], 0.0)
    views = np.random.default_rng(5).choice(["PA", "AP", "LATERAL"], n, p=[0.45, 0.3, 0.25])
    imgs = cxr.render_images(f, np.arange(n) // 2, np.arange(n), views, 64, 0)
    X = np.stack([np.asarray(Image.fromarray(x).resize((16, 16), Image.Resampling.BOX), np.float64).ravel() / 255
                  for x in imgs])
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    targets = {"cardiomegaly": f["ctr"] >= 0.55, "effusion": np.maximum(f["effusion_l"], f["effusion_r"]) >= 0.1,
               "consolidation": f["consolidation"] >= 0.25, "edema": f["edema"] >= 0.25, "devices": f["devices"] > 0}
    tr, te = np.arange(n) < 700, np.arange(n) >= 700
    auc = {}
    for name, y in targets.items():
        m = LogisticRegression(C=0.05, max_iter=2000).fit(X[tr], y[tr])
        auc[name] = roc_auc_score(y[te], m.decision_function(X[te]))
    assert all(a > 0.7 for a in auc.values()), auc


def test_image_grid_tiles_with_captions():
    imgs = render(random_findings(5, 0), size=64)
    grid = cxr.image_grid(imgs, [f"image {i}" for i in range(4)] + ["a caption long enough to wrap " * 3], cols=3,
                          tile=96)
    assert grid.size == (3 * 96, 2 * (96 + 3 * 12 + 4)) and grid.mode == "L"
    strip = np.asarray(grid)[96:96 + 14, :96]
    assert strip.max() > 200          # the caption is drawn


# ---- reports -----------------------------------------------------------------------------------

def reports(n: int, seed: int):
    f = random_findings(n, 100 + seed)
    views = [("PA", "LATERAL"), ("AP",), ("PA",)]
    v = [views[i % 3] for i in range(n)]
    ind = np.array(["Dyspnea", "Fever, cough", "Line placement", "Intubated"])[np.arange(n) % 4]
    texts, intended = cxr.write_reports(f, v, ind, np.arange(n) + 1000, seed)
    return f, v, ind, texts, intended


def test_reports_have_sections_negations_and_hedges():
    f, _, _, texts, _ = reports(400, 0)
    sec = [extract_sections(t) for t in texts]
    share_f = np.mean([s["findings"] is not None for s in sec])
    assert 0.88 < share_f < 0.97 and all(s["impression"] for s in sec)
    assert all("FINAL REPORT" in t and "INDICATION:" in t and "EXAMINATION:" in t for t in texts)
    neg = np.mean([bool(__import__("re").search(r"\bno\b|without", t.lower())) for t in texts])
    hedge = np.mean([any(w in t.lower() for w in ("possible", "cannot exclude", "may ", "concerning for",
                                                   "upper limits of normal", "borderline")) for t in texts])
    assert neg > 0.8 and 0.1 < hedge < 0.8
    assert len(set(texts)) == len(texts)
    joined = " ".join(texts).lower()
    for phrase in ("cardiomegaly", "pleural effusion", "pneumothorax", "carina", "edema", "lobe"):
        assert phrase in joined


def test_reports_deterministic_per_study_key():
    f, v, ind, texts, intended = reports(30, 2)
    order = np.arange(30)[::-1]
    t2, i2 = cxr.write_reports({k: x[order] for k, x in f.items()}, [v[i] for i in order], ind[order],
                               np.arange(30)[order] + 1000, 2)
    assert t2 == [texts[i] for i in order]
    _, _, _, t3, _ = reports(30, 3)
    assert t3 != texts


def test_intended_labels_follow_report_truth():
    for seed in (0, 1):
        f, _, _, _, intended = reports(300, seed)
        truth = cxr.report_truth(f)
        for k in CXR_FINDINGS:
            said = ~np.isnan(intended[k])
            if k == "No Finding":
                assert np.array_equal(intended[k] == 1, truth[k] == 1)
            else:
                assert np.array_equal(intended[k][said], truth[k][said]), k
        assert np.nanmean(np.isnan(intended["Pneumothorax"])) < 0.3       # most reports say "no pneumothorax"


def test_labeler_agrees_with_intended_labels():
    for seed in (0, 4, 9):
        _, _, _, texts, intended = reports(300, seed)
        got = cxr.chexpert_labels(texts)
        for k in CXR_FINDINGS:
            said = ~np.isnan(intended[k])
            if said.sum() >= 5:
                agree = np.mean(got[k][said] == intended[k][said])
                assert agree >= 0.95, (seed, k, agree)


@pytest.mark.parametrize("text, expect", [
    ("FINDINGS: No pleural effusion or pneumothorax. Heart size is normal.\n\nIMPRESSION: Normal.",
     {"Pleural Effusion": 0.0, "Pneumothorax": 0.0, "Cardiomegaly": 0.0, "No Finding": 1.0}),
    ("FINDINGS: Moderate cardiomegaly. Possible small left effusion.\n\nIMPRESSION: Cannot exclude early pneumonia.",
     {"Cardiomegaly": 1.0, "Pleural Effusion": -1.0, "Pneumonia": -1.0, "Lung Opacity": -1.0,
      "Enlarged Cardiomediastinum": 1.0}),
    ("IMPRESSION: Patchy opacity in the right lower lobe concerning for pneumonia. Lungs are free of edema. "
     "Endotracheal tube terminates 4 cm above the carina.",
     {"Lung Opacity": 1.0, "Pneumonia": -1.0, "Edema": 0.0, "Support Devices": 1.0, "Consolidation": np.nan}),
    ("FINDINGS: The lungs are clear without consolidation, but there is a small right pleural effusion.",
     {"Consolidation": 0.0, "Pleural Effusion": 1.0}),
])
def test_labeler_hand_examples(text, expect):
    got = cxr.chexpert_labels([text])
    for k, v in expect.items():
        assert (np.isnan(got[k][0]) and np.isnan(v)) or got[k][0] == v, (k, got[k][0])


# ---- real reports ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def openi(shared_data):
    path = shared_data / "text" / "NLMCXR_reports.tgz"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return cxr.read_openi_reports(path)


def test_openi_sections_are_found(openi):
    assert len(openi) == 3955
    with_f = [r for r in openi if r["findings"]]
    with_i = [r for r in openi if r["impression"]]
    assert len(with_f) > 2500 and len(with_i) > 3500
    assert np.mean([extract_sections(r["text"])["findings"] is not None for r in with_f]) >= 0.95
    assert np.mean([extract_sections(r["text"])["impression"] is not None for r in with_i]) >= 0.95
    assert any("Cardiomegaly" in m for r in openi for m in r["mesh"])


def test_labeler_against_openi_mesh(openi):
    lab = cxr.chexpert_labels([r["text"] for r in openi])
    mesh_terms = {"Cardiomegaly": ("cardiomegaly",), "Pleural Effusion": ("pleural effusion",),
                  "Edema": ("pulmonary edema", "edema"), "Atelectasis": ("pulmonary atelectasis", "atelectasis")}
    for k, terms in mesh_terms.items():
        mesh = np.array([any(m.split("/")[0].strip().lower() in terms for m in r["mesh"]) for r in openi])
        pred = np.isin(lab[k], (1.0, -1.0))
        recall, precision = (pred & mesh).sum() / mesh.sum(), (pred & mesh).sum() / pred.sum()
        bar = 0.6 if k in ("Cardiomegaly", "Pleural Effusion") else 0.5
        assert recall >= bar and precision >= 0.3, (k, recall, precision)
    normal = np.array([r["mesh"] == ["normal"] for r in openi])
    assert np.mean(lab["No Finding"][normal] == 1) > 0.8


def test_compare_reports_with_openi(openi):
    _, _, _, texts, _ = reports(200, 0)
    out = cxr.compare_reports(texts, [r["text"] for r in openi])
    syn, real = out["synthetic"], out["real"]
    assert real["reports"] == 3955 and syn["reports"] == 200
    assert 10 < real["words_median"] < 80 and real["words_p10"] <= real["words_median"] <= real["words_p90"]
    assert 0.0 < real["negation_rate"] < 1.0 and 0.0 < syn["uncertainty_rate"] < 1.0
    assert out["token_overlap"] > 0.7 and 0.0 < out["top500_jaccard"] < 1.0
