"""Synthetic chest X-rays, their radiology reports, and a CheXpert-style labeler (pure functions).

The imaging world (`imaging.draw_imaging`) decides what each image shows as intensities
(`VISUAL`); this module turns them into pixels, a study's intensities into report text, and
report text into the 14 CheXpert observations (`medmm.data.schema.CXR_FINDINGS`).

Images (`render_images`, uint8 size x size, 64..224 px). Coordinates run -1..1 across the film; the
patient's right is on the image's left (radiographic convention). A frontal film (PA / AP) is a
sum of densities: a soft-tissue body envelope, two lung fields (dark ellipses cut from below by
the diaphragm domes, the right dome higher), the mediastinum between them, the spine with
vertebral banding, the trachea (dark), clavicles, posterior ribs as curved periodic arcs, and a
heart ellipse whose transverse width is ``ctr`` x the thoracic width. Patient-level anatomy
(thorax size, lung height, dome depth, rib spacing, heart position, body size) is drawn from
``(seed, patient_key)``; image-level variation (shift, rotation of a few degrees, inspiration
depth, exposure / contrast / gamma, grain, a bright "L" marker box) from ``(seed, image_key)``.
AP films: heart 8% wider, diaphragm higher (lower lung volumes), more rotation and grain.
Findings (0 = absent) replace lung air by density:

    ctr              heart width = ctr x thoracic width (normal ~0.45, cardiomegaly >= 0.55)
    edema            perihilar "bat-wing" haze + fine basal lateral horizontal lines (Kerley-like)
    effusion_l / _r  fluid filling that fraction of the hemithorax height from the base, with a
                     meniscus rising laterally (blunts the costophrenic angle, hides the dome)
    consolidation    patchy dense blob in lobe ``consolidation_lobe`` (0 RUL, 1 RML, 2 RLL, 3 LUL,
                     4 lingula, 5 LLL), radius and density growing with the value, with dark
                     branching air-bronchogram streaks
    diffuse_opacity  bilateral ground-glass haze, denser peripherally (ARDS-like)
    atelectasis      a thin plate-like band above the dome of one or both bases
    pneumothorax     a dark, vessel-free rim along the apex / lateral wall behind a thin bright
                     visceral pleural line; width grows with the value
    nodule           a round dense lesion, radius 0.02-0.08 of the film
    fracture         one rib with a step and a gap
    devices          ETT (tube in the trachea ending above the carina), CVC (curve from the right
                     neck into the SVC), NG (midline line past the diaphragm to the left upper
                     abdomen), pacemaker (bright box, upper left chest, leads to the heart)

The pneumothorax side and the nodule position (lung side and zone) are a function of the value
itself (`_side_of`), so that the report written from the same value names the side the image
shows. A LATERAL film has one lung field, the heart anterior (image left), the spine posterior,
the domes below, and shows cardiac size, effusion (posterior costophrenic blunting),
consolidation, edema, diffuse opacity, atelectasis, nodule and the devices; pneumothorax and
fracture are not drawn on it. Each image's random stream is
``SeedSequence([seed, 0xC3, image_key])`` (patient: ``[seed, 0xC4, patient_key]``), every draw
made whatever the findings, so the output is byte-identical in any batching or order.

Speed (one core, `render_images` + `encode_jpeg`, 400 images of mixed views and findings, CPU
time): 305-430 images/s at 128 px and 120-160 images/s at 224 px on the 2-core development
machine while other jobs shared it (wall clock there: 150-360 and 60-100 images/s).

Reports (`write_reports`): MIMIC-CXR-shaped text (FINAL REPORT, EXAMINATION, INDICATION,
COMPARISON, FINDINGS, IMPRESSION; 5% IMPRESSION only, 3% one "FINDINGS AND IMPRESSION" section),
sentences drawn from templates per finding, grades from intensity (`GRADES`), negatives mentioned
with a probability (`NEGATIVE_MENTION`), borderline intensities written with hedges. A finding's
state is ``1`` (present) at or above its ``THRESHOLDS`` "present" value, ``-1`` (uncertain) from
its "uncertain" value up to it, ``0`` below: `report_truth` computes these states (what the
report is written from; deterministic, no randomness). `write_reports` returns the texts and the
intended labels: what each text says per observation (1 / 0 / -1 / nan not mentioned). Wherever
an intended label is not nan it equals `report_truth`'s state (No Finding: 1 where the truth is
1, else nan). Pneumonia follows consolidation: 1 when the consolidation is dense
(``>= PNEUMONIA_DENSE``), -1 when present but less dense or uncertain ("concerning for").

Labeler (`chexpert_labels`): CheXpert-style rules on the FINDINGS + IMPRESSION sections
(`extract_sections`; the whole text when neither is found). Sentences are split into clauses at
"but", "however", "although", ";" ...; each synonym mention is: uncertain if "cannot exclude" /
"not excluded" style phrases are near it; else negative if a negation cue ("no", "without", "free
of", "negative for", "resolved", "clear of" ...) is among the 10 words before it in its clause, or
"is not seen" / "has resolved" style phrases follow it; else uncertain if an uncertainty cue
("possible", "may", "likely", "suggest", "concerning for", "versus", "question of" ...) is among
the 10 words before it, or "is possible" / "versus" follows it; else positive. Heart and
mediastinal size are read from "heart size / cardiac silhouette / cardiomediastinal silhouette"
with "enlarged" (a mention), "normal / unremarkable" (negative) or "upper limits of normal /
borderline" (uncertain). A report's label is 1 if any mention is positive, else -1 if any is
uncertain, else 0 if any is negative, else nan. Hierarchy (as CheXpert's): Lung Opacity takes the
strongest (1 > -1 > 0) of its own label and those of Edema, Consolidation, Pneumonia, Atelectasis
and Lung Lesion; Enlarged Cardiomediastinum likewise with Cardiomegaly. No Finding is 1 when no
observation besides Support Devices is 1 or -1, else nan.

Real reports: `read_openi_reports` reads the Open-I (Indiana University) archive,
`report_stats` / `compare_reports` measure synthetic reports against them.
"""

from __future__ import annotations

import io
import re
import tarfile
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from medmm.data.schema import CXR_FINDINGS
from medmm.data.sources.mimic_cxr import extract_sections

VIEWS = ("PA", "AP", "LATERAL")
DEVICE_ETT, DEVICE_CVC, DEVICE_NG, DEVICE_PACER = 1, 2, 4, 8   # bitmask of `devices`
VISUAL = ("ctr", "edema", "effusion_l", "effusion_r", "consolidation", "consolidation_lobe", "diffuse_opacity",
          "atelectasis", "pneumothorax", "nodule", "fracture", "devices")
SIZES = (64, 224)
LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "lingula", "left lower lobe")

# (uncertain from, present from) on a study's intensity; below "uncertain" the finding is absent.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "ctr": (0.52, 0.55), "edema": (0.15, 0.25), "effusion": (0.06, 0.10), "consolidation": (0.15, 0.25),
    "diffuse_opacity": (0.30, 0.40), "atelectasis": (0.15, 0.30), "pneumothorax": (0.10, 0.20),
    "nodule": (0.15, 0.25), "fracture": (0.5, 0.5),
}
# grade boundaries (mild / moderate / severe) of a present finding
GRADES: dict[str, tuple[float, float]] = {
    "ctr": (0.60, 0.65), "edema": (0.45, 0.70), "effusion": (0.25, 0.50), "consolidation": (0.45, 0.70),
    "diffuse_opacity": (0.50, 0.65), "pneumothorax": (0.40, 0.65),
}
PNEUMONIA_DENSE = 0.5         # a present consolidation at least this dense is written as pneumonia
NEGATIVE_MENTION = {"effusion": 0.85, "pneumothorax": 0.85, "consolidation": 0.6, "edema": 0.4, "fracture": 0.2,
                    "heart": 0.9}
IMPRESSION_ONLY, COMBINED = 0.05, 0.03      # shares of reports without a FINDINGS section / with one joint section

_f32 = np.float32
_LUT = 1024         # entries of the tabulated gamma curve


# ---- images -------------------------------------------------------------------------------------

def _side_of(value: float) -> int:
    """A finding's side (-1 image left = patient right, +1 image right = patient left) and zone from
    its value, so that pixels and report agree without sharing a random stream."""
    return int(round(float(value) * 1e4))


def _upsample(low: np.ndarray, size: int) -> np.ndarray:
    """(size, size) smooth noise, ~unit scale, from a small grid of normal draws (bicubic)."""
    return np.asarray(Image.fromarray(low.astype(_f32), mode="F").resize((size, size), Image.Resampling.BICUBIC))


def _step(z: np.ndarray, w: float) -> np.ndarray:
    """A soft 0 -> 1 ramp of width w around z = 0."""
    z = z * (1.0 / w)
    z += 0.5
    return np.minimum(np.maximum(z, 0.0, out=z), 1.0, out=z)


def _band(d: np.ndarray, half: float, soft: float = 0.006) -> np.ndarray:
    """1 where |d| < half, softened."""
    z = np.abs(d)
    z -= half
    z *= -1.0 / soft
    z += 0.5
    return np.minimum(np.maximum(z, 0.0, out=z), 1.0, out=z)


class _Grid:
    """The film's transformed coordinates X, Y (size, size) and the sub-window that holds a box
    of (X, Y) values, so that local features cost only their own pixels."""

    def __init__(self, g: np.ndarray, X: np.ndarray, Y: np.ndarray, dx: float, dy: float) -> None:
        self.g, self.X, self.Y, self.dx, self.dy = g, X, Y, dx, dy

    def box(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        m = 0.08
        g = self.g
        r = slice(int(np.searchsorted(g, y0 + self.dy - m)), int(np.searchsorted(g, y1 + self.dy + m)))
        c = slice(int(np.searchsorted(g, x0 + self.dx - m)), int(np.searchsorted(g, x1 + self.dx + m)))
        return r, c


def _curve_band(X: np.ndarray, Y: np.ndarray, y0: float, y1: float, x0: float, x1: float, power: float,
                half: float) -> np.ndarray:
    """A line from (x0, y0) to (x1, y1) that runs vertical at its y1 end: x = x1 + (x0 - x1) t^power,
    t = (y1 - y) / (y1 - y0); thickness kept roughly constant along the slope."""
    t = np.clip((y1 - Y) / (y1 - y0), 0.0, 1.0)
    lx = x1 + (x0 - x1) * t ** power
    slope = np.abs((x0 - x1) * power * np.maximum(t, 1e-3) ** (power - 1) / (y1 - y0))
    inside = _step(Y - min(y0, y1), 0.01) * _step(max(y0, y1) - Y, 0.01)
    return _band(X - lx, half * np.sqrt(1.0 + slope * slope)) * inside


def _patient(seed: int, key: int) -> dict[str, float]:
    r = np.random.default_rng(np.random.SeedSequence([seed, 0xC4, int(key)]))
    u = r.random(16).tolist()
    return {
        "tw": 0.62 + 0.12 * u[0], "apex": -0.80 + 0.10 * u[1], "base": 0.40 + 0.14 * u[2], "depth": 0.12 + 0.08 * u[3],
        "body": 0.14 + 0.14 * u[4], "rib": 0.15 + 0.04 * u[5], "heart_dx": 0.02 + 0.08 * u[6],
        "heart_b": 0.28 + 0.08 * u[7], "med": 0.07 + 0.04 * u[8], "clav": -0.70 + 0.08 * u[9],
        "fx_rib": float(int(2 + 4 * u[10])), "fx_side": 1.0 if u[11] < 0.5 else -1.0, "fx_x": 0.45 + 0.3 * u[12],
        "atel_both": float(u[13] < 0.35), "rib_arc": 0.12 + 0.1 * u[14], "tissue": 0.55 + 0.1 * u[15],
    }


def _image_params(seed: int, key: int, view: str) -> tuple[dict[str, float], np.random.Generator]:
    r = np.random.default_rng(np.random.SeedSequence([seed, 0xC3, int(key)]))
    u = r.random(14).tolist()
    ap = view == "AP"
    p = {
        "rot": float(np.deg2rad((3.5 if ap else 1.8) * (2 * u[0] - 1))), "dx": 0.05 * (2 * u[1] - 1), "dy": 0.04 * (2 * u[2] - 1),
        "insp": 0.06 * (2 * u[3] - 1) - (0.08 if ap else 0.0), "contrast": 0.9 + 0.2 * u[4],
        "bright": -0.04 + 0.08 * u[5], "gamma": 0.85 + 0.3 * u[6], "grain": (0.025 if ap else 0.012) + 0.02 * u[7],
        "marker_corner": float(int(4 * u[8])), "marker": float(u[9] < 0.7), "atel_side": 1.0 if u[10] < 0.5 else -1.0,
        "ett_tip": 0.06 + 0.12 * u[11], "cvc_left": float(u[12] < 0.3), "tilt": 0.1 * (2 * u[13] - 1),
    }
    return p, r


def _clip01(z: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(z, 0.0), 1.0)


def _frontal(f: dict[str, float], P: dict[str, float], q: dict[str, float], G: _Grid,
             n_lo: np.ndarray, n_mid: np.ndarray, ap: bool) -> np.ndarray:
    X, Y = G.X, G.Y
    tw, apex, depth = P["tw"], P["apex"], P["depth"]
    base = P["base"] + q["insp"]
    H = base - apex
    ax = np.abs(X)
    body = _step(1.0 - (X * (1.0 / (tw + P["body"]))) ** 2 - ((Y - 0.1) * (1 / 1.6)) ** 2, 0.08)
    D = body * P["tissue"]
    # heart (transverse width = ctr x thoracic width 2 tw)
    ah = f["ctr"] * tw * (1.08 if ap else 1.0)
    hx = P["heart_dx"] + 0.25 * ah - 0.08
    hb = P["heart_b"] * (0.5 + 1.1 * f["ctr"])        # an enlarged heart is taller too
    hy = base - depth - 0.5 * hb
    carina = apex + 0.38 * H
    hil_y = apex + 0.45 * H
    # opacities (fractions of lung air replaced), shared by both lungs
    op = np.zeros_like(X)
    if f["edema"] > 0:
        e = f["edema"]
        wing = np.exp(-((ax - 0.22 * tw) * (1 / (0.25 * tw))) ** 2 - ((Y - hil_y) * (1 / (0.32 * H))) ** 2)
        op += e * 0.75 * wing * (0.75 + 0.25 * n_lo)
        r, c = G.box(-1.0, 1.0, base - 0.4 * H, base)
        kerley = _band(np.sin(Y[r, c] * 70.0), 0.25, 0.2) * _step(ax[r, c] - 0.6 * tw, 0.05) \
            * _step(Y[r, c] - (base - 0.35 * H), 0.05)
        op[r, c] += e * 0.35 * kerley
    if f["diffuse_opacity"] > 0:
        periph = np.minimum(ax * (1.0 / tw), 1.0)
        op += f["diffuse_opacity"] * 0.8 * (0.45 + 0.55 * periph) * (0.8 + 0.2 * n_lo)
    cons = f["consolidation"]
    if cons > 0:
        lobe = int(f["consolidation_lobe"])
        s = -1.0 if lobe < 3 else 1.0
        zx, zy = ((0.5, 0.25), (0.35, 0.62), (0.58, 0.85), (0.5, 0.25), (0.45, 0.62), (0.66, 0.85))[lobe]
        rad = 0.16 + 0.26 * cons
        cx, cy = s * zx * tw, apex + zy * H
        r, c = G.box(cx - 2.2 * rad, cx + 2.2 * rad, cy - 2.2 * rad, cy + 2.2 * rad)
        g = np.exp(-((X[r, c] - cx) ** 2 + (Y[r, c] - cy) ** 2) * (1.0 / (rad * rad)))
        nm = n_mid[r, c]
        patch = _clip01(0.7 + 0.6 * nm)
        bronch = _band(nm - 0.3, 0.05, 0.03)
        blob = g * patch * (1.0 - 0.5 * bronch)
        op[r, c] += (1.1 + 0.5 * cons) * blob
        D[r, c] += 0.08 * blob          # denser than soft tissue: shows through the heart too
    air = np.zeros_like(X)
    rim_all = None
    for s in (-1.0, 1.0):
        a = (tw - 0.07) / 2
        cx = s * (tw + 0.07) / 2
        b_s = base - (0.04 if s < 0 else 0.0)
        r, c = G.box(cx - a, cx + a, apex, b_s)
        Xs, Ys = X[r, c], Y[r, c]
        rx = (Xs - cx) * (1.0 / a)
        rx2 = rx * rx
        r2 = rx2 + ((Ys - b_s) * (1.0 / H)) ** 2
        dome = b_s - depth * (1.0 - np.minimum(rx2, 1.0))
        lung = _step(1.0 - r2, 0.12) * _step(dome - Ys, 0.025)
        local = op[r, c]
        side_eff = f["effusion_l"] if s > 0 else f["effusion_r"]
        if side_eff > 0:
            level = b_s - side_eff * H * 0.95
            lat = _clip01(s * rx)
            top = level - (0.06 + 0.12 * side_eff) * lat * lat
            fluid = _step(Ys - top, 0.05)
            local = local + fluid
        if f["atelectasis"] > 0 and (s == q["atel_side"] or P["atel_both"]):
            yb = dome - 0.09 - q["tilt"] * (Xs - cx)
            local = local + 0.95 * _band(Ys - yb, 0.010 + 0.025 * f["atelectasis"], 0.01) * _band(Xs - cx, 0.7 * a, 0.05)
        lung_air = lung * (1.0 - _clip01(local))
        ptx = f["pneumothorax"]
        if ptx > 0 and (1.0 if _side_of(ptx) % 2 else -1.0) == s:
            rr = np.sqrt(r2)
            edge = 1.0 - (0.12 + 0.3 * ptx)
            upper = _step((b_s - 0.3 * H) - Ys, 0.1)
            rim = _step(rr - edge, 0.01) * lung * upper
            lung_air = lung_air * (1.0 - rim) + rim * 1.25
            D[r, c] += 0.12 * _band(rr - edge, 0.008, 0.006) * upper * lung
            rim_all = np.zeros_like(X)
            rim_all[r, c] = rim
        air[r, c] += lung_air
    r, c = G.box(hx - ah, hx + ah, hy - hb, hy + hb)
    heart = _step(1.0 - ((X[r, c] - hx) * (1.0 / ah)) ** 2 - ((Y[r, c] - hy) * (1.0 / hb)) ** 2, 0.15)
    air[r, c] *= 1.0 - 0.95 * heart
    # vessels: ridges of the mid noise, denser toward the hila, absent in a pneumothorax rim
    hilar = 1.0 / (1.0 + ((ax - 0.2 * tw) ** 2 + (Y - hil_y) ** 2) * (1.0 / (0.3 * tw) ** 2))    # a Cauchy bump
    vessels = _band(n_mid, 0.12, 0.1) * (0.3 + 0.7 * hilar)
    if rim_all is not None:
        vessels *= 1.0 - _clip01(rim_all)
    D -= 0.42 * air * (1.0 - 0.12 * vessels)
    if f["edema"] > 0:
        D += 0.06 * f["edema"] * hilar
    # bones
    r, c = G.box(-0.1, 0.1, -1.0, 1.0)
    D[r, c] += _band(X[r, c], 0.065, 0.02) * body[r, c] * (0.14 + 0.04 * np.cos(Y[r, c] * (2 * np.pi / 0.11)))
    r, c = G.box(-0.05, 0.05, -1.0, carina)
    D[r, c] -= 0.12 * _band(X[r, c], 0.03, 0.015) * _step(carina - Y[r, c], 0.03)
    r, c = G.box(-tw - 0.05, tw + 0.05, apex - 0.1, base + 0.08)
    Xr, Yr, axr = X[r, c], Y[r, c], ax[r, c]
    u = (axr - 0.5 * tw) * (1.0 / (0.5 * tw))
    phase = (Yr - P["rib_arc"] * (1.0 - u * u)) * (1.0 / P["rib"])
    if f["fracture"] > 0:
        fx = P["fx_side"] * P["fx_x"] * tw
        row_y = apex + (P["fx_rib"] + 0.5) * P["rib"]
        win = _band(Yr - row_y, 0.8 * P["rib"], 0.05) * _band(Xr - fx, 0.25, 0.05)
        phase = phase + 0.25 * win * _step(P["fx_side"] * (Xr - fx), 0.01)
    frac = phase - np.floor(phase)
    ribs = _band(frac - 0.5, 0.16, 0.08) * _band(axr - 0.5 * tw - 0.03, 0.5 * tw, 0.04) \
        * _step(Yr - (apex - 0.08), 0.04) * _step(base + 0.05 - Yr, 0.05)
    if f["fracture"] > 0:
        ribs *= 1.0 - win * _band(Xr - fx, 0.012, 0.008)
    D[r, c] += 0.075 * ribs
    r, c = G.box(-0.7, 0.7, P["clav"] - 0.15, P["clav"] + 0.05)
    clav_line = P["clav"] - 0.12 * (ax[r, c] - 0.1)
    D[r, c] += 0.2 * _band(Y[r, c] - clav_line, 0.022, 0.012) * _band(ax[r, c] - 0.35, 0.27, 0.03)
    # nodule
    n = f["nodule"]
    if n > 0:
        h = _side_of(n)
        s = 1.0 if h % 2 else -1.0
        zy = (0.3, 0.5, 0.7)[(h // 2) % 3]
        nx, ny = s * (0.35 + 0.1 * ((h // 6) % 3)) * tw, apex + zy * H
        rad = 0.02 + 0.06 * n
        r, c = G.box(nx - rad, nx + rad, ny - rad, ny + rad)
        D[r, c] += 0.33 * _step(1.0 - ((X[r, c] - nx) ** 2 + (Y[r, c] - ny) ** 2) * (1.0 / (rad * rad)), 0.35)
    # devices
    dev = int(f["devices"])
    if dev & DEVICE_ETT:
        tip = carina - q["ett_tip"]
        r, c = G.box(-0.03, 0.03, -1.0, tip)
        D[r, c] += 0.3 * _band(X[r, c] - 0.005, 0.018, 0.008) * _step(tip - Y[r, c], 0.01)
    if dev & DEVICE_NG:
        r, c = G.box(-0.05, 0.3 * tw, -1.0, base + 0.3)
        Yr = Y[r, c]
        ngx = 0.03 * np.sin(Yr * 3.0) + 0.25 * tw * _clip01((Yr - (base - 0.15)) * (1 / 0.35)) ** 2
        D[r, c] += 0.28 * _band(X[r, c] - ngx, 0.012, 0.006) * _step(base + 0.3 - Yr, 0.02)
    if dev & DEVICE_CVC:
        sx = 1.0 if q["cvc_left"] else -1.0
        x0 = sx * 0.55 * tw
        r, c = G.box(min(x0, -0.07), max(x0, -0.07), P["clav"], carina + 0.06)
        D[r, c] += 0.3 * _curve_band(X[r, c], Y[r, c], P["clav"] + 0.02, carina + 0.06, x0, -0.07, 2.0, 0.011)
    if dev & DEVICE_PACER:
        bx, by = 0.6 * tw, P["clav"] + 0.15
        r, c = G.box(bx - 0.07, bx + 0.07, by - 0.05, by + 0.05)
        D[r, c] += 0.7 * _band(X[r, c] - bx, 0.07, 0.01) * _band(Y[r, c] - by, 0.045, 0.01)
        lx = hx - 0.3 * ah
        r, c = G.box(min(lx, bx), max(lx, bx), by, hy + 0.05)
        D[r, c] += 0.3 * _curve_band(X[r, c], Y[r, c], by, hy + 0.05, bx, lx, 1.5, 0.007)
    return D


def _lateral(f: dict[str, float], P: dict[str, float], q: dict[str, float], G: _Grid,
             n_lo: np.ndarray, n_mid: np.ndarray) -> np.ndarray:
    X, Y = G.X, G.Y
    tw, apex, depth = P["tw"], P["apex"], P["depth"]
    base = P["base"] + q["insp"] + 0.05
    H = base - apex
    a = 0.55 * tw + 0.1
    body = _step(1.0 - (X / (a + 0.25 + P["body"])) ** 2 - ((Y - 0.1) / 1.6) ** 2, 0.08)
    D = body * P["tissue"]
    rx = (X + 0.02) / a
    r2 = rx * rx + ((Y - base) / H) ** 2
    dome = base - depth * (1.0 - np.minimum(rx * rx, 1.0))
    lung = _step(1.0 - r2, 0.12) * _step(dome - Y, 0.025)
    ah = 0.5 * f["ctr"] * a + 0.05
    hx, hy = -0.55 * a + ah * 0.8, base - depth - 0.05
    heart = _step(1.0 - ((X - hx) / ah) ** 2 - ((Y - hy) / P["heart_b"]) ** 2, 0.15)
    op = np.zeros_like(X)
    hil = np.exp(-((X - 0.05) ** 2 + (Y - (apex + 0.45 * H)) ** 2) / 0.09)
    op += f["edema"] * 0.7 * hil * (0.75 + 0.25 * n_lo) + f["diffuse_opacity"] * 0.6 * (0.8 + 0.2 * n_lo)
    eff = max(f["effusion_l"], f["effusion_r"])
    if eff > 0:
        post = np.clip(rx, 0.0, 1.0)
        top = base - eff * H * 0.9 - (0.06 + 0.12 * eff) * post * post
        op += _step(Y - top, 0.05) * _step(X + 0.1, 0.1)
    c = f["consolidation"]
    if c > 0:
        lobe = int(f["consolidation_lobe"])
        zx, zy = ((0.1, 0.25), (-0.25, 0.65), (0.3, 0.8), (0.1, 0.25), (-0.25, 0.65), (0.3, 0.8))[lobe]
        rad = 0.14 + 0.22 * c
        g = np.exp(-(((X - zx * a) ** 2 + (Y - (apex + zy * H)) ** 2) / (rad * rad)))
        op += (0.7 + 0.3 * c) * g * np.clip(0.55 + 0.6 * n_mid, 0.0, 1.0) * 1.3
    if f["atelectasis"] > 0:
        op += 0.9 * _band(Y - (dome - 0.08), 0.01 + 0.02 * f["atelectasis"], 0.01) * _band(X, 0.5 * a, 0.05)
    air = lung * (1.0 - np.clip(op, 0.0, 1.0)) * (1.0 - 0.9 * heart)
    D -= 0.4 * air * (1.0 - 0.1 * _band(n_mid, 0.12, 0.1))
    spine_x = a + 0.03
    D += (0.16 + 0.06 * _band(np.sin(Y * (2 * np.pi / 0.13)), 0.8, 0.3)) * _band(X - spine_x, 0.09, 0.02) * body
    D += 0.08 * _band(X + a + 0.08, 0.02, 0.01) * _step(Y + 0.6, 0.05) * _step(0.3 - Y, 0.05)    # sternum
    tr = 0.1 + 0.15 * (Y + 1.0)
    carina = apex + 0.4 * H
    D -= 0.1 * _band(X - tr, 0.035, 0.015) * _step(carina - Y, 0.03)
    n = f["nodule"]
    if n > 0:
        h = _side_of(n)
        ny = apex + (0.3, 0.5, 0.7)[(h // 2) % 3] * H
        rad = 0.02 + 0.06 * n
        D += 0.3 * _step(1.0 - ((X - 0.1) ** 2 + (Y - ny) ** 2) / (rad * rad), 0.35)
    dev = int(f["devices"])
    if dev & DEVICE_ETT:
        D += 0.3 * _band(X - tr, 0.018, 0.008) * _step(carina - q["ett_tip"] - Y, 0.01)
    if dev & DEVICE_NG:
        D += 0.25 * _band(X - tr - 0.08 - 0.1 * np.clip(Y - carina, 0, 1), 0.008, 0.005) * _step(base + 0.3 - Y, 0.02)
    if dev & DEVICE_CVC:
        D += 0.25 * _curve_band(X, Y, P["clav"], carina + 0.1, -0.05, tr - 0.15, 1.5, 0.009)
    if dev & DEVICE_PACER:
        D += 0.7 * _band(X + 0.6 * a, 0.03, 0.01) * _band(Y - P["clav"] - 0.12, 0.07, 0.01)
    return D


def render_images(findings: dict[str, np.ndarray], patient_key: np.ndarray, image_key: np.ndarray,
                  view: np.ndarray, size: int, seed: int) -> list[np.ndarray]:
    """One uint8 (size, size) film per image: `findings[k]` (I,) for k in VISUAL, `view` (I,) of
    VIEWS. Byte-identical for the same (seed, patient_key, image_key, view, findings) whatever the
    batch."""
    if not (isinstance(size, (int, np.integer)) and SIZES[0] <= int(size) <= SIZES[1]):
        raise ValueError(f"size must be an integer in {SIZES[0]}..{SIZES[1]}, got {size!r}")
    missing = [k for k in VISUAL if k not in findings]
    if missing:
        raise ValueError(f"findings lack {missing}")
    size = int(size)
    n = len(image_key)
    views = [str(v) for v in np.asarray(view).tolist()]
    bad = sorted(set(views) - set(VIEWS))
    if bad or len(views) != n or len(patient_key) != n or any(len(findings[k]) != n for k in VISUAL):
        raise ValueError(f"views must be in {VIEWS} and every array of length {n} (bad views: {bad})")
    g = np.linspace(-1.0, 1.0, size, dtype=_f32)
    gx, gy = g[None, :], g[:, None]
    zero = np.zeros((size, size), _f32)
    cols = {k: np.asarray(findings[k], np.float64) for k in VISUAL}
    ramp = np.linspace(0.0, 1.0, _LUT)
    patients: dict[int, dict[str, float]] = {}       # anatomy of the patients of this batch
    out = []
    for i in range(n):
        f = {k: float(cols[k][i]) for k in VISUAL}
        pk = int(patient_key[i])
        if pk not in patients:
            patients[pk] = _patient(seed, pk)
        P = patients[pk]
        q, r = _image_params(seed, int(image_key[i]), views[i])
        lo, mid = r.standard_normal((6, 6)), r.standard_normal((22, 22))    # drawn whatever is used
        grain = r.standard_normal((size, size), dtype=_f32)
        hazy = f["edema"] > 0 or f["diffuse_opacity"] > 0
        n_lo = _upsample(lo, size) if hazy else zero
        n_mid = _upsample(mid * 0.5, size)
        cs, sn = float(np.cos(q["rot"])), float(np.sin(q["rot"]))
        X = cs * gx + (sn * gy - q["dx"])
        Y = cs * gy + (-sn * gx - q["dy"])
        G = _Grid(g, X, Y, q["dx"], q["dy"])
        D = _lateral(f, P, q, G, n_lo, n_mid) if views[i] == "LATERAL" else \
            _frontal(f, P, q, G, n_lo, n_mid, views[i] == "AP")
        # exposure: a linear map into the tabulated gamma curve (in grey levels), then grain
        D *= q["contrast"] * 1.25 * (_LUT - 1)
        D += q["bright"] * (_LUT - 1) + 0.5
        idx = np.minimum(np.maximum(D, 0.0, out=D), _LUT - 1, out=D).astype(np.int16)
        v = (255.0 * ramp ** q["gamma"] + 0.5).astype(_f32)[idx]
        grain *= q["grain"] * 255.0
        v += grain
        if q["marker"]:
            m = max(3, size // 20)
            r0 = 2 if q["marker_corner"] < 2 else size - m - 2
            c0 = 2 if q["marker_corner"] % 2 == 0 else size - m - 2
            v[r0:r0 + m, c0:c0 + m] = 242.0
        out.append(np.minimum(np.maximum(v, 0.0, out=v), 255.0, out=v).astype(np.uint8))
    return out


def encode_jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    """Grayscale baseline JPEG bytes of a uint8 (H, W) image (same image -> same bytes)."""
    if img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(f"expected a uint8 (H, W) image, got {img.dtype} {img.shape}")
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="JPEG", quality=int(quality), optimize=False)
    return buf.getvalue()


def image_grid(images: list[np.ndarray], captions: list[str], cols: int, tile: int = 224) -> Image.Image:
    """Tile uint8 images `cols` per row, each scaled to `tile` px with its caption wrapped in a
    strip below (three lines at most)."""
    if not images or len(captions) != len(images) or cols < 1:
        raise ValueError("need images, one caption per image and cols >= 1")
    font = ImageFont.load_default()
    per_line = max(8, tile // 6)                    # the default bitmap font is ~6 px a character
    lines = [textwrap.wrap(c, per_line)[:3] for c in captions]
    strip = 12 * max(len(x) for x in lines) + 4
    rows = -(-len(images) // cols)
    grid = Image.new("L", (cols * tile, rows * (tile + strip)), 0)
    draw = ImageDraw.Draw(grid)
    for i, (img, cap) in enumerate(zip(images, lines)):
        x, y = (i % cols) * tile, (i // cols) * (tile + strip)
        grid.paste(Image.fromarray(img, mode="L").resize((tile, tile), Image.Resampling.BICUBIC), (x, y))
        for k, line in enumerate(cap):
            draw.text((x + 3, y + tile + 2 + 12 * k), line, fill=255, font=font)
    return grid


# ---- report truth -------------------------------------------------------------------------------

def _state(x: np.ndarray, key: str) -> np.ndarray:
    lo, hi = THRESHOLDS[key]
    x = np.asarray(x, np.float64)
    return np.where(x >= hi, 1.0, np.where(x >= lo, -1.0, 0.0))


def _strongest(*xs: np.ndarray) -> np.ndarray:
    """Element-wise 1 > -1 > 0 > nan."""
    rank = {1.0: 3, -1.0: 2, 0.0: 1}
    out = np.full(np.shape(xs[0]), np.nan)
    best = np.zeros(np.shape(xs[0]))
    for x in xs:
        r = np.select([x == 1, x == -1, x == 0], [rank[1.0], rank[-1.0], rank[0.0]], 0)
        take = r > best
        out = np.where(take, x, out)
        best = np.maximum(best, r)
    return out


def _hierarchy(lab: dict[str, np.ndarray]) -> None:
    """Lung Opacity and Enlarged Cardiomediastinum take their children's stronger labels; No Finding
    is 1 where nothing besides Support Devices is 1 or -1, else nan (in place)."""
    lab["Lung Opacity"] = _strongest(lab["Lung Opacity"], *(lab[k] for k in (
        "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Lung Lesion")))
    lab["Enlarged Cardiomediastinum"] = _strongest(lab["Enlarged Cardiomediastinum"], lab["Cardiomegaly"])
    any_pos = np.zeros(len(lab["Cardiomegaly"]), bool)
    for k in CXR_FINDINGS:
        if k not in ("No Finding", "Support Devices"):
            any_pos |= np.isin(lab[k], (1.0, -1.0))
    lab["No Finding"] = np.where(any_pos, np.nan, 1.0)


def report_truth(findings: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per CheXpert observation, the state a report is written from: 1 present, -1 uncertain, 0
    absent (THRESHOLDS; hierarchy as the labeler's). No Finding is 1 or 0; Pleural Other is 0."""
    n = len(np.asarray(findings["ctr"]))
    cons = np.asarray(findings["consolidation"], np.float64)
    cs = _state(cons, "consolidation")
    t = {k: np.zeros(n) for k in CXR_FINDINGS}
    t["Cardiomegaly"] = _state(findings["ctr"], "ctr")
    t["Edema"] = _state(findings["edema"], "edema")
    t["Pleural Effusion"] = _strongest(_state(findings["effusion_l"], "effusion"),
                                       _state(findings["effusion_r"], "effusion"))
    t["Consolidation"] = cs
    t["Pneumonia"] = np.where((cs == 1) & (cons >= PNEUMONIA_DENSE), 1.0, np.where(cs != 0, -1.0, 0.0))
    t["Lung Opacity"] = _state(findings["diffuse_opacity"], "diffuse_opacity")
    t["Atelectasis"] = _state(findings["atelectasis"], "atelectasis")
    t["Pneumothorax"] = _state(findings["pneumothorax"], "pneumothorax")
    t["Lung Lesion"] = _state(findings["nodule"], "nodule")
    t["Fracture"] = np.where(np.asarray(findings["fracture"], np.float64) >= THRESHOLDS["fracture"][1], 1.0, 0.0)
    t["Support Devices"] = (np.asarray(findings["devices"]).astype(np.int64) > 0).astype(np.float64)
    _hierarchy(t)
    t["No Finding"] = np.nan_to_num(t["No Finding"], nan=0.0)
    return t


# ---- reports ------------------------------------------------------------------------------------

def _grade(x: float, key: str, words: tuple[str, str, str] = ("mild", "moderate", "severe")) -> str:
    a, b = GRADES[key]
    return words[0] if x < a else words[1] if x < b else words[2]


class _Report:
    """Sentences of one report with the labels each carries."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.findings: list[str] = []
        self.impression: list[str] = []
        self.labels: dict[str, list[float]] = {k: [] for k in CXR_FINDINGS}

    def pick(self, options: list):
        return options[int(self.rng.integers(len(options)))]

    def say(self, text: str, labels: dict[str, float], impression: str | None = None) -> None:
        self.findings.append(text)
        if impression:
            self.impression.append(impression)
        for k, v in labels.items():
            self.labels[k].append(v)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _write_one(f: dict[str, float], views: tuple[str, ...], indication: str, rng: np.random.Generator) -> tuple[str, dict[str, float]]:
    R = _Report(rng)
    st = {k: float(_state(np.array([f[k]]), k)[0]) for k in ("edema", "consolidation", "diffuse_opacity",
                                                               "atelectasis", "pneumothorax", "nodule")}
    heart = float(_state(np.array([f["ctr"]]), "ctr")[0])
    eff = {"left": float(_state(np.array([f["effusion_l"]]), "effusion")[0]),
           "right": float(_state(np.array([f["effusion_r"]]), "effusion")[0])}
    # devices
    dev = int(f["devices"])
    if dev & DEVICE_ETT:
        cm = R.pick(["3", "4", "4.5", "5", "5.5", "6"])
        R.say(R.pick([f"Endotracheal tube terminates {cm} cm above the carina.",
                      f"The endotracheal tube tip is {cm} cm above the carina.",
                      f"ET tube in standard position, {cm} cm from the carina."]),
              {"Support Devices": 1.0}, "Endotracheal tube in appropriate position.")
    if dev & DEVICE_CVC:
        R.say(R.pick(["Right internal jugular central venous catheter terminates in the mid SVC.",
                      "Right IJ line ends at the cavoatrial junction.",
                      "A left subclavian central line has its tip in the SVC."]),
              {"Support Devices": 1.0}, R.pick([None, "Central venous catheter in the SVC."]))
    if dev & DEVICE_NG:
        R.say(R.pick(["Enteric tube courses below the diaphragm, tip in the stomach.",
                      "Nasogastric tube is in the stomach.",
                      "An orogastric tube extends below the diaphragm and out of view."]), {"Support Devices": 1.0})
    if dev & DEVICE_PACER:
        R.say(R.pick(["Left chest wall pacemaker with leads in the right atrium and right ventricle.",
                      "Dual-lead pacemaker device is unchanged in position.",
                      "Left-sided pacer with leads terminating in the right heart."]), {"Support Devices": 1.0})
    # lungs
    c = f["consolidation"]
    lobe = LOBES[int(f["consolidation_lobe"]) % 6]
    if st["consolidation"] == 1:
        pn = c >= PNEUMONIA_DENSE
        if pn:
            R.say(R.pick([f"Dense consolidation in the {lobe}, consistent with pneumonia.",
                          f"There is focal consolidation of the {lobe} compatible with pneumonia."]),
                  {"Consolidation": 1.0, "Pneumonia": 1.0}, R.pick([f"{_cap(lobe)} pneumonia.",
                                                                   f"Consolidation in the {lobe} consistent with pneumonia."]))
        else:
            R.say(*R.pick([(f"Patchy opacity in the {lobe} concerning for pneumonia.", {"Lung Opacity": 1.0, "Pneumonia": -1.0}),
                           (f"Consolidation in the {lobe}, concerning for pneumonia.", {"Consolidation": 1.0, "Pneumonia": -1.0}),
                           (f"New {lobe} airspace opacity, suspicious for pneumonia.", {"Lung Opacity": 1.0, "Pneumonia": -1.0})]),
                  impression=f"{_cap(lobe)} opacity concerning for pneumonia.")
    elif st["consolidation"] == -1:
        R.say(*R.pick([(f"Cannot exclude early pneumonia in the {lobe}.", {"Pneumonia": -1.0}),
                       (f"Possible subtle {lobe} opacity, which may represent early consolidation.",
                        {"Lung Opacity": -1.0, "Consolidation": -1.0}),
                       (f"There may be a subtle {lobe} opacity, possibly early pneumonia.",
                        {"Lung Opacity": -1.0, "Pneumonia": -1.0})]),
              impression="Possible early pneumonia.")
        R.labels["Pneumonia"].append(-1.0)
    elif rng.random() < NEGATIVE_MENTION["consolidation"]:
        if rng.random() < 0.5:
            R.say("No focal consolidation.", {"Consolidation": 0.0})
        else:
            R.say("No focal consolidation to suggest pneumonia.", {"Consolidation": 0.0, "Pneumonia": 0.0})
    d = f["diffuse_opacity"]
    if st["diffuse_opacity"] == 1:
        g = _grade(d, "diffuse_opacity", ("mild", "moderate", "extensive"))
        R.say(R.pick([f"{_cap(g)} diffuse bilateral airspace opacities, worse peripherally.",
                      f"{_cap(g)} bilateral ground-glass opacities.",
                      f"Widespread {g} bilateral hazy opacities, likely ARDS."]),
              {"Lung Opacity": 1.0}, "Diffuse bilateral opacities.")
    elif st["diffuse_opacity"] == -1:
        R.say(R.pick(["Possible faint bilateral hazy opacities.", "Question of subtle diffuse haziness of both lungs."]),
              {"Lung Opacity": -1.0})
    e = f["edema"]
    if st["edema"] == 1:
        g = _grade(e, "edema")
        R.say(R.pick([f"{_cap(g)} pulmonary edema.", f"{_cap(g)} interstitial edema.",
                      f"There is {g} pulmonary vascular congestion with interstitial edema.",
                      f"Findings are consistent with {g} pulmonary edema."]),
              {"Edema": 1.0}, R.pick([f"{_cap(g)} pulmonary edema.", f"{_cap(g)} congestive failure with edema."]))
    elif st["edema"] == -1:
        R.say(R.pick(["Possible mild interstitial edema.", "Cannot exclude mild pulmonary edema.",
                      "Mild vascular prominence may reflect early congestion."]), {"Edema": -1.0})
    elif rng.random() < NEGATIVE_MENTION["edema"]:
        R.say(R.pick(["No pulmonary edema.", "There is no pulmonary vascular congestion.", "No evidence of edema."]),
              {"Edema": 0.0})
    if st["atelectasis"] == 1:
        R.say(R.pick(["Plate-like atelectasis at the lung bases.", "Bibasilar atelectasis.",
                      "Linear atelectasis at the left base.", "Streaky right basilar atelectasis."]),
              {"Atelectasis": 1.0}, R.pick([None, "Basilar atelectasis."]))
    elif st["atelectasis"] == -1:
        R.say(R.pick(["There may be minor basilar atelectasis.", "Possible minimal bibasilar atelectasis."]),
              {"Atelectasis": -1.0})
    n = f["nodule"]
    if st["nodule"] != 0:
        h = _side_of(n)
        where = f"{'left' if h % 2 else 'right'} {('upper', 'mid', 'lower')[(h // 2) % 3]} lung"
        mm = int(round(4 + 30 * n))
        if st["nodule"] == 1:
            R.say(R.pick([f"{mm} mm nodule in the {where}.",
                          f"There is a {mm}-mm {where} nodule, for which CT is recommended."]),
                  {"Lung Lesion": 1.0}, f"{_cap(where)} nodule, recommend chest CT.")
        else:
            R.say(*R.pick([(f"Possible small nodular opacity in the {where}.", {"Lung Lesion": -1.0, "Lung Opacity": -1.0}),
                           (f"A small nodule in the {where} cannot be excluded.", {"Lung Lesion": -1.0})]))
    # pleura
    pos = [s for s in ("right", "left") if eff[s] == 1]
    unc = [s for s in ("right", "left") if eff[s] == -1]
    if pos:
        size_of = lambda s: f["effusion_r" if s == "right" else "effusion_l"]  # noqa: E731
        g = _grade(max(size_of(s) for s in pos), "effusion", ("small", "moderate", "large"))
        side = "bilateral" if len(pos) == 2 else pos[0]
        plural = "s" if len(pos) == 2 else ""
        R.say(R.pick([f"{_cap(g)} {side} pleural effusion{plural}.",
                      f"There {'are' if plural else 'is a'} {g} {side} pleural effusion{plural}.",
                      f"{_cap(g)} {side} pleural effusion{plural} with blunting of the costophrenic angle{plural}."]),
              {"Pleural Effusion": 1.0}, f"{_cap(g)} {side} pleural effusion{plural}.")
    for s in unc:
        R.say(R.pick([f"Possible small {s} pleural effusion.", f"Minimal blunting of the {s} costophrenic angle, "
                      "possibly a trace effusion.", f"A trace {s} effusion is not excluded."]), {"Pleural Effusion": -1.0})
    p = f["pneumothorax"]
    ps = "left" if _side_of(p) % 2 else "right"
    if st["pneumothorax"] == 1:
        g = _grade(p, "pneumothorax", ("small", "moderate", "large"))
        R.say(R.pick([f"There is a {g} {ps} apical pneumothorax.", f"{_cap(g)} {ps} pneumothorax."]),
              {"Pneumothorax": 1.0}, f"{_cap(g)} {ps} pneumothorax.")
    elif st["pneumothorax"] == -1:
        R.say(R.pick([f"Possible tiny {ps} apical pneumothorax.", f"A tiny {ps} apical pneumothorax cannot be excluded."]),
              {"Pneumothorax": -1.0}, "Possible tiny pneumothorax.")
    neg_eff = not pos and not unc and rng.random() < NEGATIVE_MENTION["effusion"]
    neg_ptx = st["pneumothorax"] == 0 and rng.random() < NEGATIVE_MENTION["pneumothorax"]
    if neg_eff and neg_ptx:
        R.say(R.pick(["No pleural effusion or pneumothorax.", "There is no pleural effusion or pneumothorax.",
                      "No effusion or pneumothorax is seen."]), {"Pleural Effusion": 0.0, "Pneumothorax": 0.0})
    elif neg_eff:
        R.say(R.pick(["No pleural effusion.", "The costophrenic angles are sharp."]), {"Pleural Effusion": 0.0})
    elif neg_ptx:
        R.say(R.pick(["There is no pneumothorax.", "No pneumothorax."]), {"Pneumothorax": 0.0})
    # heart
    if heart == 1:
        g = _grade(f["ctr"], "ctr")
        R.say(R.pick([f"{_cap(g)} cardiomegaly.", f"The cardiac silhouette is {g}ly enlarged.",
                      f"{_cap(g)} enlargement of the cardiac silhouette.", f"{_cap(g)} cardiomegaly is unchanged."]),
              {"Cardiomegaly": 1.0}, f"{_cap(g)} cardiomegaly.")
    elif heart == -1:
        R.say(R.pick(["Heart size is at the upper limits of normal.", "Borderline cardiomegaly.",
                      "The cardiac silhouette is borderline enlarged."]), {"Cardiomegaly": -1.0})
    elif rng.random() < NEGATIVE_MENTION["heart"]:
        opts = [("Heart size is normal.", {"Cardiomegaly": 0.0}), ("The heart is normal in size.", {"Cardiomegaly": 0.0}),
                ("Normal heart size.", {"Cardiomegaly": 0.0}),
                ("The cardiomediastinal silhouette is within normal limits.", {"Enlarged Cardiomediastinum": 0.0}),
                ("The cardiac and mediastinal silhouettes are unremarkable.",
                 {"Cardiomegaly": 0.0, "Enlarged Cardiomediastinum": 0.0})]
        R.say(*R.pick(opts))
    # bones
    if f["fracture"] >= THRESHOLDS["fracture"][1]:
        rib = R.pick(["fifth", "sixth", "seventh", "eighth"])
        side = R.pick(["left", "right"])
        R.say(R.pick([f"Age-indeterminate fracture of the {side} {rib} rib.", f"Healing {side} {rib} rib fracture."]),
              {"Fracture": 1.0}, R.pick([None, f"{_cap(side)} {rib} rib fracture."]))
    elif rng.random() < NEGATIVE_MENTION["fracture"]:
        R.say("No displaced rib fracture.", {"Fracture": 0.0})
    else:
        R.say(R.pick(["No acute osseous abnormality.", "Osseous structures are intact.", "The visualized bones are unremarkable."]), {})
    if not R.findings[:-1] and rng.random() < 0.5:
        R.findings.insert(0, "The lungs are clear.")
    if not R.impression:
        R.impression.append(R.pick(["No acute cardiopulmonary process.", "No acute intrathoracic process.",
                                    "No acute cardiopulmonary abnormality."]))
    # labels
    lab = {}
    for k in CXR_FINDINGS:
        v = R.labels[k]
        lab[k] = 1.0 if 1.0 in v else -1.0 if -1.0 in v else 0.0 if 0.0 in v else np.nan
    # text
    exam = {("PA", "LATERAL"): "CHEST (PA AND LAT)", ("AP",): "CHEST (PORTABLE AP)", ("PA",): "CHEST (PA)"}.get(
        tuple(views), "CHEST (" + " AND ".join("LAT" if v == "LATERAL" else v for v in views) + ")")
    ind = indication.strip().rstrip(".")
    who = R.pick(["man", "woman", "patient"])
    ind_text = f"___-year-old {who} with {ind[:1].lower() + ind[1:]}" + R.pick(
        ["", ", evaluate for pneumonia", ", assess for interval change", ", please evaluate"]) + "."
    imp = R.impression
    imp_text = "\n ".join(f"{i + 1}. {s}" for i, s in enumerate(imp)) if len(imp) > 1 else imp[0]
    head = f"                                 FINAL REPORT\n EXAMINATION:  {exam}\n\n INDICATION:  {ind_text}\n\n"
    head += f" COMPARISON:  {R.pick(['___', 'None.', 'Chest radiograph from ___.'])}\n\n"
    u = rng.random()
    body = " ".join(R.findings)
    if u < IMPRESSION_ONLY:
        text = head + f" IMPRESSION:\n\n {body} {' '.join(imp)}\n"
    elif u < IMPRESSION_ONLY + COMBINED:
        text = head + f" FINDINGS AND IMPRESSION:\n\n {body} {' '.join(imp)}\n"
    else:
        text = head + f" FINDINGS:\n\n {body}\n\n IMPRESSION:\n\n {imp_text}\n"
    _hier = {k: np.array([lab[k]]) for k in CXR_FINDINGS}
    _hierarchy(_hier)
    return text, {k: float(v[0]) for k, v in _hier.items()}


def write_reports(findings: dict[str, np.ndarray], views: list[tuple[str, ...]], indication: np.ndarray,
                  study_key: np.ndarray, seed: int) -> tuple[list[str], dict[str, np.ndarray]]:
    """One report per study (findings (S,) per VISUAL key: the study's maxima over its images) and
    the labels it was written to carry per CXR_FINDINGS (1 / 0 / -1 / nan not mentioned; No
    Finding 1 / nan). Deterministic per (seed, study_key)."""
    S = len(study_key)
    if len(views) != S or len(indication) != S or any(len(np.asarray(findings[k])) != S for k in VISUAL):
        raise ValueError(f"findings, views and indication must all have {S} rows")
    cols = {k: np.asarray(findings[k], np.float64) for k in VISUAL}
    texts: list[str] = []
    labels = {k: np.full(S, np.nan) for k in CXR_FINDINGS}
    for s in range(S):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC5, int(study_key[s])]))
        text, lab = _write_one({k: float(cols[k][s]) for k in VISUAL}, tuple(views[s]), str(indication[s]), rng)
        texts.append(text)
        for k in CXR_FINDINGS:
            labels[k][s] = lab[k]
    return texts, labels


# ---- labeler ------------------------------------------------------------------------------------

_MENTION = {
    "Atelectasis": r"atelecta\w*|\bcollapsed?\b",
    "Consolidation": r"consolidat\w*",
    "Edema": r"\bedema\b|vascular congestion|pulmonary congestion|\bcongestion\b|fluid overload|kerley|cephalization"
             r"|vascular redistribution|congestive failure",
    "Fracture": r"fractur\w*",
    "Lung Lesion": r"nodul\w*|\bmass(?:es)?\b|\blesions?\b|tumou?r|neoplas\w*|carcinoma|malignan\w*",
    "Lung Opacity": r"opacit\w*|opacifi\w*|infiltrat\w*|air ?space (?:disease|process)|haziness|\bhazy\b"
                    r"|ground[- ]glass|densit(?:y|ies)\b",
    "Pleural Effusion": r"(?<!pericardial )effusions?\b|pleural fluid|blunt\w* of the (?:\w+ )?(?:costophrenic|cp) angles?"
                        r"|blunted (?:\w+ )?(?:costophrenic|cp) angles?",
    "Pleural Other": r"pleural thickening|pleural plaques?|fibrothorax|pleural scar\w*|pleural calcifi\w*",
    "Pneumonia": r"pneumoni\w*|infectious process|\binfection\b|pneumonic",
    "Pneumothorax": r"pneumothora\w*|\bptx\b",
    "Support Devices": r"\b(?:endotracheal|et|enteric|nasogastric|ng|orogastric|og|feeding|chest|tracheostomy|dobhoff)"
                       r" tubes?\b|\btubes?\b|\bcatheters?\b|\b(?:picc|central|venous|jugular|subclavian|ij|swan[- ]ganz)"
                       r" (?:line|catheter)s?\b|\blines?(?= and tubes)|pacemaker|\bpacer\b|defibrillator|\baicd\b"
                       r"|\bleads\b|\bport-?a-?cath\b|\bstents?\b|sternotomy wires|\bwires\b|surgical clips",
}
_MENTION_RE = {k: re.compile(v) for k, v in _MENTION.items()}
_HEART_RE = re.compile(r"\b(?:heart|cardiac)\b")
_MEDIAST_RE = re.compile(r"cardiomediastinal|mediastin\w*")
_ENLARGED_RE = re.compile(r"enlarg\w*|cardiomegaly|widen\w*|prominen\w*|\blarger?\b")
_NORMAL_RE = re.compile(r"\bnormal\b|within normal limits|unremarkable|\bstable normal\b")
_BORDER_RE = re.compile(r"upper limits? of normal|borderline|top normal|top-normal")
_SHARP_RE = re.compile(r"(?:costophrenic|cp) angles? (?:are |is |remain )?(?:sharp|clear|preserved)|sharp costophrenic")
_EXCLUDE = re.compile(r"cannot (?:be )?(?:exclude|excluded|rule out|ruled out)|not (?:be )?(?:excluded|ruled out)"
                      r"|can ?not be excluded|could not be excluded")
_NEG_PRE = re.compile(r"\b(?:no|not|without|free of|negative for|clear of|absence of|absent|resolved|resolution of"
                      r"|removal of|rather than|neither|nor)\b")
_NEG_POST = re.compile(r"^\W*(?:\w+ ){0,3}?(?:is|are|has|have)? ?(?:not (?:seen|present|identified|visualized|evident)"
                       r"|no longer (?:seen|present|visualized)|resolved|absent|removed)\b")
_UNC_PRE = re.compile(r"\b(?:possible|possibly|may|might|likely|probable|probably|suggest\w*|concerning for|concern for"
                      r"|suspicious for|suspect\w*|versus|vs|question of|questionable|cannot exclude|could|either"
                      r"|rule out|r/o|differential|equivocal|borderline|uncertain|presumed|worrisome)\b")
_UNC_POST = re.compile(r"^\W*(?:\w+ ){0,3}?(?:is |are )?(?:possible|possibly|likely|versus|vs|or\b|suspected|"
                       r"not excluded|questioned|cannot be excluded)")
_CLAUSE = re.compile(r"\b(?:but|however|although|though|whereas|aside from|apart from|except for|otherwise)\b|;")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Za-z0-9_])|\n+")


def _mention_value(clause: str, start: int, end: int) -> float:
    pre = " ".join(clause[:start].split()[-10:])
    post = clause[end:end + 60]
    if _EXCLUDE.search(pre) or _EXCLUDE.search(post):
        return -1.0
    if _NEG_PRE.search(pre) or _NEG_POST.search(post):
        return 0.0
    if _UNC_PRE.search(pre) or _UNC_POST.search(post):
        return -1.0
    return 1.0


def _size_value(clause: str, m: re.Match) -> float | None:
    """Cardiomegaly / mediastinal size from a heart or mediastinum mention in its clause."""
    rest = clause[m.start():]
    enl = _ENLARGED_RE.search(rest)
    if enl:
        return _mention_value(clause, m.start() + enl.start(), m.start() + enl.end())
    border = _BORDER_RE.search(clause)
    if border:
        return -1.0 if _mention_value(clause, border.start(), border.end()) != 0.0 else 0.0
    if _NORMAL_RE.search(clause):
        return 0.0
    return None


def _label_text(text: str) -> dict[str, float]:
    vals: dict[str, list[float]] = {k: [] for k in CXR_FINDINGS}
    for sent in _SENT.split(text.lower()):
        for clause in _CLAUSE.split(sent):
            if not clause.strip():
                continue
            for k, rx in _MENTION_RE.items():
                for m in rx.finditer(clause):
                    vals[k].append(_mention_value(clause, m.start(), m.end()))
            if _SHARP_RE.search(clause):
                vals["Pleural Effusion"].append(0.0)
            if "cardiomegaly" in clause:
                i = clause.index("cardiomegaly")
                v = _BORDER_RE.search(clause[:i])
                vals["Cardiomegaly"].append(-1.0 if v else _mention_value(clause, i, i + len("cardiomegaly")))
            else:
                m = _HEART_RE.search(clause)
                v = _size_value(clause, m) if m else None
                if v is not None:
                    vals["Cardiomegaly"].append(v)
            m = _MEDIAST_RE.search(clause)
            v = _size_value(clause, m) if m else None
            if v is not None:
                vals["Enlarged Cardiomediastinum"].append(v)
    return {k: (1.0 if 1.0 in v else -1.0 if -1.0 in v else 0.0 if 0.0 in v else np.nan) for k, v in vals.items()}


def chexpert_labels(texts: list[str]) -> dict[str, np.ndarray]:
    """CheXpert-style labels per CXR_FINDINGS (1 / 0 / -1 / nan) of each report's FINDINGS +
    IMPRESSION (the whole text where neither section is found); rules in the module doc."""
    out = {k: np.full(len(texts), np.nan) for k in CXR_FINDINGS}
    for i, t in enumerate(texts):
        sec = extract_sections(t)
        body = " ".join(x for x in (sec["findings"], sec["impression"]) if x) or (t or "")
        for k, v in _label_text(body).items():
            out[k][i] = v
    _hierarchy(out)
    return out


# ---- real reports -------------------------------------------------------------------------------

def read_openi_reports(tgz: Path) -> list[dict]:
    """The Open-I (Indiana University) reports of NLMCXR_reports.tgz, sorted by id: id, text
    ("FINDINGS: ...\\n\\nIMPRESSION: ..." of the sections present), findings, impression (None when
    absent) and mesh (the MeSH major terms, e.g. "Cardiomegaly/mild")."""
    out = []
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".xml")):
                continue
            root = ET.fromstring(tar.extractfile(member).read())
            sec = {}
            for node in root.iter("AbstractText"):
                label = (node.get("Label") or "").upper()
                if label in ("FINDINGS", "IMPRESSION"):
                    txt = " ".join("".join(node.itertext()).split())
                    sec[label.lower()] = txt or None
            uid = root.find("uId")
            rid = uid.get("id") if uid is not None else Path(member.name).stem
            parts = [f"{k.upper()}: {sec[k]}" for k in ("findings", "impression") if sec.get(k)]
            out.append({"id": rid, "text": "\n\n".join(parts), "findings": sec.get("findings"),
                        "impression": sec.get("impression"),
                        "mesh": [(m.text or "").strip() for m in root.iter("major") if (m.text or "").strip()]})
    out.sort(key=lambda r: (len(r["id"]), r["id"]))
    return out


_WORD = re.compile(r"[a-z]+")


def _body(text: str) -> str:
    sec = extract_sections(text)
    return " ".join(x for x in (sec["findings"], sec["impression"]) if x) or (text or "")


def report_stats(texts: list[str]) -> dict:
    """Words per report (FINDINGS + IMPRESSION) median / p10 / p90, shares with a FINDINGS and an
    IMPRESSION section, shares of sentences with a negation / uncertainty cue, vocabulary size."""
    words, has_f, has_i, sents, neg, unc = [], 0, 0, 0, 0, 0
    vocab: Counter = Counter()
    for t in texts:
        sec = extract_sections(t)
        has_f += sec["findings"] is not None
        has_i += sec["impression"] is not None
        body = _body(t).lower()
        toks = _WORD.findall(body)
        words.append(len(toks))
        vocab.update(toks)
        for s in _SENT.split(body):
            if _WORD.search(s):
                sents += 1
                neg += bool(_NEG_PRE.search(s))
                unc += bool(_UNC_PRE.search(s) or _EXCLUDE.search(s))
    n = max(len(texts), 1)
    w = np.asarray(words or [0])
    return {"reports": len(texts), "words_median": float(np.median(w)), "words_p10": float(np.percentile(w, 10)),
            "words_p90": float(np.percentile(w, 90)), "share_findings": has_f / n, "share_impression": has_i / n,
            "negation_rate": neg / max(sents, 1), "uncertainty_rate": unc / max(sents, 1), "vocabulary": len(vocab)}


def compare_reports(synthetic: list[str], real: list[str]) -> dict:
    """Both `report_stats`, the share of synthetic word tokens whose word the real reports use, and
    the Jaccard index of the two 500 most frequent word sets."""
    cs = Counter(w for t in synthetic for w in _WORD.findall(_body(t).lower()))
    cr = Counter(w for t in real for w in _WORD.findall(_body(t).lower()))
    tokens = sum(cs.values())
    overlap = sum(c for w, c in cs.items() if w in cr) / max(tokens, 1)
    top_s, top_r = {w for w, _ in cs.most_common(500)}, {w for w, _ in cr.most_common(500)}
    jac = len(top_s & top_r) / max(len(top_s | top_r), 1)
    return {"synthetic": report_stats(synthetic), "real": report_stats(real), "token_overlap": overlap,
            "top500_jaccard": jac}


__all__ = [
    "VIEWS", "VISUAL", "DEVICE_ETT", "DEVICE_CVC", "DEVICE_NG", "DEVICE_PACER", "LOBES", "THRESHOLDS", "GRADES",
    "PNEUMONIA_DENSE", "NEGATIVE_MENTION", "render_images", "encode_jpeg", "image_grid", "report_truth",
    "write_reports", "chexpert_labels", "read_openi_reports", "report_stats", "compare_reports",
]
