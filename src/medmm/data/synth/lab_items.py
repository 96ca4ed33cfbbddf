"""The long tail of MIMIC-III lab items: LABEVENTS items beyond the 27 of `catalog.LABS`.

Real MIMIC-III has ~750 lab items (D_LABITEMS): a few dozen drawn with every blood draw, then a
long tail of panels ordered for a reason (an anemia work-up, a paracentesis, a tox screen). About
12% of its LABEVENTS rows have a text VALUE and an empty VALUENUM: urinalysis dipsticks ("NEG",
"TR", "MOD"), smear grades ("1+", "OCCASIONAL"), blood-gas specimen types ("ART"), tubes held
for add-on tests ("HOLD"), censored results ("<0.02", "GREATER THAN 2000").

Every item here is a real D_LABITEMS row: ITEMID, LABEL, FLUID and CATEGORY exactly as MIMIC-III
spells them, including its few upper-case rows (50800 "SPECIMEN TYPE" is FLUID "BLOOD", CATEGORY
"BLOOD GAS"). The unit is the VALUEUOM MIMIC writes most often for the item (None where it writes
none or a blank). Everything else is this generator's own parameters, calibrated on the public
MIMIC-III demo (100 patients, 129 admissions, 76 k LABEVENTS rows; tests/test_lab_items.py checks
the catalogue against it when MEDMM_SHARED_DATA is set):

* kind: "numeric" (VALUENUM always set), "qualitative" (a text result only) or "mixed" (numeric,
  with the text forms in `values`, each written with probability `value_p` per row and then
  VALUENUM empty, as MIMIC does for "<0.02" and for "NEG" on a urine dipstick).
* values / value_p: the text results the demo shows for the item (forms seen once are dropped
  where the item has many); one-off failures ("UNABLE TO REPORT", "COMPUTER NETWORK FAILURE")
  are left out of otherwise numeric items.
* mean / sd: the demo median and interquartile range / 1.35, a typical inpatient (not healthy)
  value; for chemistries sd is at most half the mean (their skewed tails would otherwise pile up
  at the floor), and items the demo has only a few rows of have clinical values set by hand.
  decimals: how MIMIC most often formats the item; floor: where values are clipped (the demo's
  smallest value, or a fraction of the mean).
* low / high: the range outside which MIMIC sets FLAG "abnormal", read off the demo's flags and
  the usual adult reference range. Items MIMIC never flags have an infinite range; body-fluid
  differentials, which MIMIC flags whenever anything is counted, have the range (0, 0).
* draws_per_admission: the demo's rows of the item per admission times 200/316, the ratio of the
  generator's core rows per admission (~200 rows of the 27 core items) to the demo's (316). An
  admission then keeps the demo's mix of core and long-tail rows, and `nonnumeric_share(200)` is
  ~0.12 against the demo's 0.119.

Blood-bank results (ABO, Rh) are not LABEVENTS items in MIMIC-III, so none are here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

KINDS = ("numeric", "qualitative", "mixed")
_INF = math.inf


@dataclass(frozen=True)
class ExtraLab:
    """One additional LABEVENTS item (see the module docstring for where each field comes from)."""

    itemid: int            # MIMIC-III D_LABITEMS ITEMID
    label: str             # its LABEL, exactly
    fluid: str             # its FLUID
    category: str          # its CATEGORY
    unit: str | None       # VALUEUOM as MIMIC writes it (None where it has none)
    kind: str              # "numeric", "qualitative" or "mixed"
    mean: float = 0.0      # numeric/mixed: typical inpatient value
    sd: float = 0.0
    low: float = 0.0       # FLAG "abnormal" outside [low, high]
    high: float = 0.0
    decimals: int = 0
    floor: float = 0.0     # physiological floor (values are clipped here)
    values: tuple[str, ...] = ()     # qualitative: its results; mixed: its text (censored) forms
    value_p: tuple[float, ...] = ()  # qualitative: their probabilities (sum 1); mixed: per-row probability of each
    panel: str = ""        # the order group it comes with (a key of PANELS)
    draws_per_admission: float = 0.0  # expected rows of this item in one admission

    def __post_init__(self) -> None:
        where = f"lab item {self.itemid} ({self.label})"
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {KINDS}, got {self.kind!r}")
        if len(self.values) != len(self.value_p) or len(set(self.values)) != len(self.values):
            raise ValueError(f"{where}: values and value_p must pair up, without repeats")
        if any(not 0.0 < p <= 1.0 for p in self.value_p):
            raise ValueError(f"{where}: every value_p must be in (0, 1]")
        if self.kind == "qualitative" and not math.isclose(sum(self.value_p), 1.0, abs_tol=1e-9):
            raise ValueError(f"{where}: qualitative value_p must sum to 1, got {sum(self.value_p)}")
        if self.kind == "mixed" and not (self.values and sum(self.value_p) < 1.0):
            raise ValueError(f"{where}: a mixed item needs text forms whose value_p sum below 1")
        if self.kind == "numeric" and self.values:
            raise ValueError(f"{where}: a numeric item has no text values")
        if self.kind != "qualitative" and not (self.sd >= 0 and self.low <= self.high):
            raise ValueError(f"{where}: needs sd >= 0 and low <= high")
        if not (self.draws_per_admission > 0 and self.decimals >= 0):
            raise ValueError(f"{where}: draws_per_admission must be > 0 and decimals >= 0")

    @property
    def text_p(self) -> float:
        """Probability that one row of this item is a text result (VALUENUM empty)."""
        return 1.0 if self.kind == "qualitative" else sum(self.value_p)


def _num(itemid, label, fluid, category, unit, per_admission, mean, sd, low, high, decimals, floor=0.0):
    return ExtraLab(itemid, label, fluid, category, unit, "numeric", mean, sd, low, high, decimals, floor,
                    draws_per_admission=per_admission)


def _qual(itemid, label, fluid, category, unit, per_admission, values: dict[str, float]):
    return ExtraLab(itemid, label, fluid, category, unit, "qualitative", values=tuple(values),
                    value_p=tuple(values.values()), draws_per_admission=per_admission)


def _mixed(itemid, label, fluid, category, unit, per_admission, mean, sd, low, high, decimals,
           censored: dict[str, float], floor=0.0):
    return ExtraLab(itemid, label, fluid, category, unit, "mixed", mean, sd, low, high, decimals, floor,
                    values=tuple(censored), value_p=tuple(censored.values()), draws_per_admission=per_admission)


def _panel(name: str, *items: ExtraLab) -> tuple[ExtraLab, ...]:
    return tuple(replace(x, panel=name) for x in items)


# Rows:  _num(itemid, label, fluid, category, unit, per admission, mean, sd, low, high, decimals[, floor])
#        _qual(itemid, label, fluid, category, unit, per admission, {result: probability})
#        _mixed(... as _num ..., {text form: probability per row}[, floor])
# Within a panel, the most frequent items first.
EXTRA_LABS: tuple[ExtraLab, ...] = (
    # red-cell indices reported with every complete blood count
    *_panel("cbc",
        _num(51249, "MCHC", "Blood", "Hematology", "%", 9.9, 33.5, 1.6, 31, 35, 1),
        _num(51248, "MCH", "Blood", "Hematology", "pg", 9.8, 29.5, 2.2, 27, 32, 1),
        _num(51250, "MCV", "Blood", "Hematology", "fL", 9.8, 88, 6.7, 82, 98, 0),
        _num(51279, "Red Blood Cells", "Blood", "Hematology", "m/uL", 9.8, 3.35, 0.56, 4.2, 6.1, 2),
        _num(51277, "RDW", "Blood", "Hematology", "%", 9.8, 16.4, 1.9, 10.5, 15.5, 1),
        _num(51300, "WBC Count", "Blood", "Hematology", "K/uL", 0.0049, 7.5, 3, 4, 11, 1, floor=0.3),
    ),
    # manual and automated white-cell differential (percent of cells)
    *_panel("cbc_diff",
        _num(51146, "Basophils", "Blood", "Hematology", "%", 2.7, 0.2, 0.22, 0, 2, 1),
        _num(51200, "Eosinophils", "Blood", "Hematology", "%", 2.7, 1, 1.4, 0, 4, 1),
        _num(51244, "Lymphocytes", "Blood", "Hematology", "%", 2.7, 11.1, 8.4, 18, 42, 1),
        _num(51254, "Monocytes", "Blood", "Hematology", "%", 2.7, 4.9, 2.9, 2, 11, 1),
        _num(51256, "Neutrophils", "Blood", "Hematology", "%", 2.7, 80, 11, 50, 70, 1),
        _num(51144, "Bands", "Blood", "Hematology", "%", 1.1, 0, 3, 0, 5, 0),
        _num(51143, "Atypical Lymphocytes", "Blood", "Hematology", "%", 0.86, 0, 0.74, 0, 0, 0),
        _num(51251, "Metamyelocytes", "Blood", "Hematology", "%", 0.86, 0, 1.5, 0, 0, 0),
        _num(51255, "Myelocytes", "Blood", "Hematology", "%", 0.86, 0, 1.1, 0, 0, 0),
        _num(51218, "Granulocyte Count", "Blood", "Hematology", "#/uL", 0.49, 1880, 4000, 2300, 8200, 0),
        _num(51257, "Nucleated Red Cells", "Blood", "Hematology", "%", 0.16, 2, 1.5, 0, 0, 0),
        _num(51148, "Blasts", "Blood", "Hematology", "%", 0.049, 1, 4.4, 0, 0, 0),
        _num(51269, "Promyelocytes", "Blood", "Hematology", "%", 0.044, 1, 0.74, 0, 0, 0),
        _num(51259, "Other Cells", "Blood", "Hematology", "%", 0.029, 1.5, 2.2, 0, 0, 0),
        _num(51263, "Plasma Cells", "Blood", "Hematology", "%", 0.02, 2.5, 0.74, -_INF, _INF, 0),
        _num(51302, "Young Cells", "Blood", "Hematology", "%", 0.0098, 7.5, 11, 0, 0, 0),
        _num(51133, "Absolute Lymphocyte Count", "Blood", "Hematology", "#/uL", 0.0049, 1550, 310, -_INF, _INF, 0),
        _num(51199, "Eosinophil Count", "Blood", "Hematology", "#/uL", 0.0049, 190, 38, -_INF, _INF, 0),
        _num(51232, "Hypersegmented Neutrophils", "Blood", "Hematology", "%", 0.0049, 1, 0.2, 0, 0, 0),
        _num(51245, "Lymphocytes, Percent", "Blood", "Hematology", "%", 0.0049, 50, 10, 18, 42, 0),
    ),
    # peripheral-smear morphology, graded NORMAL / OCCASIONAL / 1+ .. 3+
    *_panel("smear",
        _qual(51233, "Hypochromia", "Blood", "Hematology", None, 1.1,
              {"NORMAL": 0.448, "1+": 0.292, "2+": 0.125, "3+": 0.079, "OCCASIONAL": 0.056}),
        _qual(51137, "Anisocytosis", "Blood", "Hematology", None, 1.1,
              {"1+": 0.554, "2+": 0.223, "NORMAL": 0.167, "OCCASIONAL": 0.042, "3+": 0.014}),
        _qual(51246, "Macrocytes", "Blood", "Hematology", None, 1,
              {"NORMAL": 0.479, "1+": 0.263, "2+": 0.15, "OCCASIONAL": 0.075, "3+": 0.033}),
        _qual(51252, "Microcytes", "Blood", "Hematology", None, 0.99,
              {"NORMAL": 0.443, "1+": 0.358, "2+": 0.129, "OCCASIONAL": 0.04, "3+": 0.03}),
        _qual(51267, "Poikilocytosis", "Blood", "Hematology", None, 0.94,
              {"1+": 0.431, "NORMAL": 0.358, "OCCASIONAL": 0.116, "2+": 0.095}),
        _qual(51268, "Polychromasia", "Blood", "Hematology", None, 0.85,
              {"NORMAL": 0.615, "1+": 0.201, "OCCASIONAL": 0.167, "2+": 0.017}),
        _qual(51266, "Platelet Smear", "Blood", "Hematology", None, 0.84,
              {"LOW": 0.328, "NORMAL": 0.316, "VERY LOW": 0.251, "RARE": 0.105}),
        _qual(51260, "Ovalocytes", "Blood", "Hematology", None, 0.39, {"1+": 0.638, "OCCASIONAL": 0.312, "2+": 0.05}),
        _qual(51287, "Schistocytes", "Blood", "Hematology", None, 0.25, {"OCCASIONAL": 0.725, "1+": 0.275}),
        _qual(51296, "Teardrop Cells", "Blood", "Hematology", None, 0.21, {"OCCASIONAL": 0.69, "1+": 0.31}),
        _qual(51151, "Burr Cells", "Blood", "Hematology", None, 0.15, {"OCCASIONAL": 0.5, "1+": 0.367, "2+": 0.133}),
        _qual(51292, "Spherocytes", "Blood", "Hematology", None, 0.13,
              {"1+": 0.847, "OCCASIONAL": 0.115, "2+": 0.038}),
        _qual(51240, "Large Platelets", "Blood", "Hematology", None, 0.11, {"1+": 0.409, "2+": 0.318, "3+": 0.273}),
        _qual(51294, "Target Cells", "Blood", "Hematology", None, 0.11,
              {"1+": 0.572, "OCCASIONAL": 0.333, "2+": 0.095}),
        _qual(51145, "Basophilic Stippling", "Blood", "Hematology", None, 0.098, {"OCCASIONAL": 0.75, "1+": 0.25}),
        _qual(51197, "Elliptocytes", "Blood", "Hematology", None, 0.044, {"OCCASIONAL": 0.556, "1+": 0.444}),
        _qual(51216, "Fragmented Cells", "Blood", "Hematology", None, 0.044, {"OCCASIONAL": 0.889, "1+": 0.111}),
        _qual(51134, "Acanthocytes", "Blood", "Hematology", None, 0.034,
              {"OCCASIONAL": 0.571, "1+": 0.286, "2+": 0.143}),
        _qual(51236, "Inpatient Hematology/Oncology Smear", "Blood", "Hematology", None, 0.034,
              {"AVAILABLE AT THE EAST CAMPUS LAB": 0.714, "DONE": 0.286}),
        _qual(51278, "Red Blood Cell Fragments", "Blood", "Hematology", None, 0.034, {"NORMAL": 1}),
        _qual(51147, "Bite Cells", "Blood", "Hematology", None, 0.02, {"OCCASIONAL": 1}),
        _qual(51219, "H/O Smear", "Blood", "Hematology", None, 0.02, {"DONE": 0.75, "D": 0.25}),
        _qual(51198, "Envelope Cells", "Blood", "Hematology", None, 0.0098, {"OCCASIONAL": 1}),
        _qual(51262, "Pencil Cells", "Blood", "Hematology", None, 0.0098, {"OCCASIONAL": 1}),
        _qual(51150, "Blood Parasite Smear", "Blood", "Hematology", None, 0.0049, {"NEG": 1}),
        _qual(51247, "MacroOvalocytes", "Blood", "Hematology", None, 0.0049, {"OCCASIONAL": 1}),
        _qual(51264, "Platelet Clumps", "Blood", "Hematology", None, 0.0049, {"1+": 1}),
        _qual(51290, "Sickle Cell Preparation", "Blood", "Hematology", None, 0.0049, {"POS": 1}),
    ),
    # coagulation beyond INR and PTT
    *_panel("coags",
        _num(51274, "PT", "Blood", "Hematology", "sec", 6.8, 15.5, 4.7, 10.4, 13.4, 1),
        _num(51214, "Fibrinogen, Functional", "Blood", "Hematology", "mg/dL", 0.64, 214, 150, 150, 400, 0),
        _mixed(51196, "D-Dimer", "Blood", "Hematology", "ng/mL", 0.13, 3240, 4800, 0, 500, 0,
               {"<500": 0.15, ">10000": 0.038, "1000-2000": 0.038}),
        _qual(51213, "Fibrin Degradation Products", "Blood", "Hematology", "ug/mL", 0.1,
              {"0-10": 0.45, "10-40": 0.4, "40-80": 0.15}),
        _num(50915, "D-Dimer", "Blood", "Chemistry", "ng/mL", 0.025, 2550, 1300, 0, 500, 0, floor=510),
        _num(51229, "Heparin, LMW", "Blood", "Hematology", "U/mL", 0.02, 0.39, 0.27, -_INF, _INF, 2),
        _num(51297, "Thrombin", "Blood", "Hematology", "sec", 0.015, 18.4, 13, 15, 19, 1),
        _num(51206, "Factor VIII", "Blood", "Hematology", "%", 0.0098, 345, 160, 50, 150, 0),
        _qual(51243, "Lupus Anticoagulant", "Blood", "Hematology", None, 0.0098, {"NEG": 0.5, "POS": 0.5}),
        _num(51298, "Von Willebrand Factor Activity", "Blood", "Hematology", "%", 0.0098, 416, 110, 50, 150, 0),
        _qual(51299, "Von Willebrand Factor Antigen", "Blood", "Hematology", "%", 0.0098,
              {"GREATER THAN 200": 0.5, ">200": 0.5}),
        _num(51136, "Alpha Antiplasmin", "Blood", "Hematology", "%", 0.0049, 71, 14, 80, 120, 0),
        _num(51204, "Factor V", "Blood", "Hematology", "%", 0.0049, 10, 2, 70, 150, 0),
        _qual(51211, "Factor XIII", "Blood", "Hematology", "%", 0.0049, {"NORMAL": 1}),
        _qual(51235, "Inhibitor Screen", "Blood", "Hematology", None, 0.0049, {"NEG": 1}),
    ),
    # the blood-gas panel: specimen type, ventilator settings and co-oximetry
    *_panel("blood_gas",
        _qual(50800, "SPECIMEN TYPE", "BLOOD", "BLOOD GAS", None, 6,
              {"ART": 0.894, "MIX": 0.07, "VEN": 0.033, "CENTRAL VENOUS": 0.003}),
        _num(50802, "Base Excess", "Blood", "Blood Gas", "mEq/L", 5.7, 0, 4.4, -_INF, _INF, 0, floor=-30),
        _num(50804, "Calculated Total CO2", "Blood", "Blood Gas", "mEq/L", 5.7, 25, 5.9, 21, 30, 0, floor=5),
        _num(50808, "Free Calcium", "Blood", "Blood Gas", "mmol/L", 2.7, 1.1, 0.089, 1.12, 1.32, 2, floor=0.55),
        _qual(50812, "Intubated", "Blood", "Blood Gas", None, 2.4, {"INTUBATED": 0.717, "NOT INTUBATED": 0.283}),
        _num(50825, "Temperature", "Blood", "Blood Gas", None, 2.2, 37.2, 0.89, -_INF, _INF, 1, floor=30),
        _num(50817, "Oxygen Saturation", "Blood", "Blood Gas", "%", 1.7, 95, 4, -_INF, _INF, 0, floor=40),
        _num(50816, "Oxygen", "Blood", "Blood Gas", "%", 1.7, 50, 22, -_INF, _INF, 0, floor=21),
        _mixed(50809, "Glucose", "Blood", "Blood Gas", "mg/dL", 1.4, 130, 38, 70, 105, 0,
               {"GREATER THAN 500": 0.0035}, floor=35),
        _qual(50827, "Ventilation Rate", "Blood", "Blood Gas", None, 1.3,
              {"18/": 0.163, "/22": 0.152, "/12": 0.139, "14/": 0.127, "/20": 0.127, "12/": 0.114, "/18": 0.089,
               "38/": 0.089}),
        _num(50819, "PEEP", "Blood", "Blood Gas", None, 1.3, 8, 3.7, -_INF, _INF, 0),
        _num(50822, "Potassium, Whole Blood", "Blood", "Blood Gas", "mEq/L", 1.3, 4.05, 0.74, 3.5, 5.3, 1, floor=2),
        _num(50826, "Tidal Volume", "Blood", "Blood Gas", None, 1.1, 500, 110, -_INF, _INF, 0, floor=100),
        _qual(50828, "Ventilator", "Blood", "Blood Gas", None, 0.69,
              {"SPONTANEOUS": 0.515, "CONTROLLED": 0.471, "IMV": 0.014}),
        _num(50810, "Hematocrit, Calculated", "Blood", "Blood Gas", "%", 0.62, 30, 4.4, -_INF, _INF, 0, floor=8),
        _num(50811, "Hemoglobin", "Blood", "Blood Gas", "g/dL", 0.62, 10, 1.6, 12, 16, 1, floor=2.7),
        _num(50824, "Sodium, Whole Blood", "Blood", "Blood Gas", "mEq/L", 0.52, 137, 3.7, 135, 145, 0, floor=100),
        _num(50806, "Chloride, Whole Blood", "Blood", "Blood Gas", "mEq/L", 0.43, 104, 6.7, 100, 112, 0, floor=70),
        _num(50801, "Alveolar-arterial Gradient", "Blood", "Blood Gas", "mm Hg",
             0.31, 534, 100, -_INF, _INF, 0, floor=130),
        _num(50823, "Required O2", "Blood", "Blood Gas", None, 0.31, 86, 13, -_INF, _INF, 0, floor=21),
        _num(50815, "O2 Flow", "Blood", "Blood Gas", "L/min", 0.22, 4, 2, -_INF, _INF, 0, floor=2),
        _num(50803, "Calculated Bicarbonate, Whole Blood", "Blood", "Blood Gas",
             "mEq/L", 0.088, 24, 3.7, 21, 29, 0, floor=4.8),
        _num(50805, "Carboxyhemoglobin", "Blood", "Blood Gas", "%", 0.025, 1, 0.5, -_INF, _INF, 0, floor=0.2),
        _num(50814, "Methemoglobin", "Blood", "Blood Gas", "%", 0.025, 0.5, 0.25, -_INF, _INF, 0, floor=0.1),
    ),
    # liver panel beyond ALT, AST, bilirubin and albumin
    *_panel("lfts",
        _num(50863, "Alkaline Phosphatase", "Blood", "Chemistry", "IU/L", 2.9, 103, 52, 40, 130, 0, floor=25),
        _num(50954, "Lactate Dehydrogenase (LD)", "Blood", "Chemistry", "IU/L", 2.1, 307, 150, 94, 250, 0, floor=88),
        _num(50883, "Bilirubin, Direct", "Blood", "Chemistry", "mg/dL", 0.29, 1.8, 0.9, 0, 0.3, 1, floor=0.1),
        _num(50884, "Bilirubin, Indirect", "Blood", "Chemistry",
             "mg/dL", 0.26, 1.45, 0.72, -_INF, _INF, 1, floor=0.1),
        _num(50976, "Protein, Total", "Blood", "Chemistry", "g/dL", 0.14, 6.1, 1.3, 6.4, 8.3, 1, floor=1.3),
        _num(50866, "Ammonia", "Blood", "Chemistry", "umol/L", 0.11, 80, 40, 0, 47, 0, floor=24),
        _num(50930, "Globulin", "Blood", "Chemistry", "g/dL", 0.064, 2.7, 0.37, 2, 4, 1, floor=0.54),
        _num(50927, "Gamma Glutamyltransferase", "Blood", "Chemistry", "IU/L", 0.029, 175, 72, 0, 51, 0, floor=35),
    ),
    # cardiac enzymes beyond troponin T
    *_panel("cardiac",
        _num(50910, "Creatine Kinase (CK)", "Blood", "Chemistry", "IU/L", 1.6, 73, 36, 25, 200, 0, floor=13),
        _mixed(50911, "Creatine Kinase, MB Isoenzyme", "Blood", "Chemistry", "ng/mL", 1.6, 6, 3, 0, 10, 0,
               {"NotDone": 0.49}, floor=1),
        _num(50908, "CK-MB Index", "Blood", "Chemistry", "%", 0.23, 4.5, 2.2, 0, 6, 1, floor=0.4),
        _mixed(51002, "Troponin I", "Blood", "Chemistry", "ng/ml", 0.069, 0.7, 0.35, 0, 0.3, 1,
               {"<0.3": 0.29, "GREATER THAN 50": 0.071}, floor=0.13),
    ),
    # pancreatic enzymes
    *_panel("pancreas",
        _num(50956, "Lipase", "Blood", "Chemistry", "IU/L", 0.72, 49.5, 25, 0, 60, 0, floor=6),
        _num(50867, "Amylase", "Blood", "Chemistry", "IU/L", 0.63, 81.5, 41, 0, 100, 0, floor=11),
    ),
    # anemia work-up: iron studies, B12, folate, reticulocytes, haptoglobin
    *_panel("iron",
        _mixed(50924, "Ferritin", "Blood", "Chemistry", "ng/mL", 0.25, 330, 160, 15, 270, 0,
               {"GREATER THAN 2000": 0.08}, floor=15),
        _num(50952, "Iron", "Blood", "Chemistry", "ug/dL", 0.25, 31.5, 16, 40, 160, 0, floor=10),
        _num(50953, "Iron Binding Capacity, Total", "Blood", "Chemistry",
             "ug/dL", 0.24, 216, 81, 260, 470, 0, floor=66),
        _num(50998, "Transferrin", "Blood", "Chemistry", "mg/dL", 0.24, 166, 62, 200, 360, 0, floor=51),
        _mixed(50935, "Haptoglobin", "Blood", "Chemistry", "mg/dL", 0.2, 192, 93, 30, 200, 0,
               {"<20": 0.22, "LESS THAN 20": 0.024}, floor=29),
        _mixed(51010, "Vitamin B12", "Blood", "Chemistry", "pg/mL", 0.19, 810, 400, 243, 894, 0,
               {"GREATER THAN 2000": 0.026}, floor=120),
        _num(51283, "Reticulocyte Count, Automated", "Blood", "Hematology", "%", 0.18, 1.4, 0.67, 1.2, 3, 1),
        _mixed(50925, "Folate", "Blood", "Chemistry", "ng/mL", 0.16, 10.2, 5.1, -_INF, _INF, 1,
               {"GREATER THAN 20 NG/ML": 0.15, "GREATER THAN 20.0": 0.03, "GREATER THAN 20": 0.03}, floor=4.5),
        _num(51284, "Reticulocyte Count, Manual", "Blood", "Hematology", "%", 0.0098, 2.05, 0.41, 0.5, 1.5, 1),
        _num(51276, "Quantitative G6PD", "Blood", "Hematology", "U/g/Hb", 0.0049, 8.9, 1.8, -_INF, _INF, 1),
    ),
    # fasting lipid panel
    *_panel("lipids",
        _num(51000, "Triglycerides", "Blood", "Chemistry", "mg/dL", 0.18, 112, 47, 0, 150, 0, floor=40),
        _num(50907, "Cholesterol, Total", "Blood", "Chemistry", "mg/dL", 0.12, 154, 39, 0, 199, 0, floor=41),
        _num(50903, "Cholesterol Ratio (Total/HDL)", "Blood", "Chemistry", "Ratio",
             0.12, 3.2, 0.89, -_INF, _INF, 1, floor=1.3),
        _num(50904, "Cholesterol, HDL", "Blood", "Chemistry", "mg/dL", 0.12, 41, 14, -_INF, _INF, 0, floor=20),
        _num(50905, "Cholesterol, LDL, Calculated", "Blood",
             "Chemistry", "mg/dL", 0.12, 88.5, 20, 0, 130, 0, floor=2),
    ),
    # thyroid function
    *_panel("thyroid",
        _mixed(50993, "Thyroid Stimulating Hormone", "Blood", "Chemistry", "uIU/mL", 0.36, 1.65, 0.82, 0.27, 4.2, 1,
               {"<0.02": 0.068}, floor=0.038),
        _num(50995, "Thyroxine (T4), Free", "Blood", "Chemistry", "ng/dL", 0.11, 1.3, 0.46, 0.93, 1.7, 1, floor=0.62),
        _num(50994, "Thyroxine (T4)", "Blood", "Chemistry", "ug/dL", 0.054, 5.4, 2.7, 4.6, 12, 1, floor=1),
        _num(51001, "Triiodothyronine (T3)", "Blood", "Chemistry", "ng/dL", 0.049, 72.5, 8.9, 80, 200, 0, floor=14),
        _num(50895, "Calculated TBG", "Blood", "Chemistry", "Ratio", 0.015, 1.01, 0.2, -_INF, _INF, 2, floor=0.2),
        _num(50896, "Calculated Thyroxine (T4) Index", "Blood", "Chemistry", "ug/dL",
             0.015, 3.1, 0.74, 4, 12, 1, floor=0.62),
        _num(51005, "Uptake Ratio", "Blood", "Chemistry", "Ratio", 0.015, 0.99, 0.2, -_INF, _INF, 2, floor=0.19),
    ),
    # other hormones and glycaemic control
    *_panel("endocrine",
        _num(50909, "Cortisol", "Blood", "Chemistry", "ug/dL", 0.31, 25.1, 13, 2.5, 20, 1, floor=1.3),
        _num(50852, "% Hemoglobin A1c", "Blood", "Chemistry", "%", 0.11, 6, 1.3, 4, 5.9, 1, floor=3),
        _num(50965, "Parathyroid Hormone", "Blood", "Chemistry", "pg/mL", 0.059, 59.5, 30, 15, 65, 0, floor=11),
        _num(50973, "Prolactin", "Blood", "Chemistry", "ng/mL", 0.029, 15, 7.5, 3, 20, 0, floor=3),
        _mixed(50926, "Follicle Stimulating Hormone", "Blood", "Chemistry", "mIU/mL", 0.025, 8.3, 4.2, -_INF, _INF, 0,
               {"<1.0": 0.2}, floor=1.6),
        _mixed(50958, "Luteinizing Hormone", "Blood", "Chemistry", "mIU/mL", 0.025, 10, 2.2, -_INF, _INF, 0,
               {"<1.0": 0.4}, floor=2),
        _qual(50854, "Absolute A1c", "Blood", "Chemistry", None, 0.02, {"DONE": 1}),
        _qual(50855, "Absolute Hemoglobin", "Blood", "Chemistry", None, 0.02, {"DONE": 1}),
        _num(50988, "Testosterone", "Blood", "Chemistry", "ng/dL", 0.0098, 217, 110, 270, 1070, 0, floor=43),
        _num(51529, "Estimated Actual Glucose", "BLOOD", "CHEMISTRY", "mg/dL", 0.0098, 192, 96, 0, 140, 0, floor=38),
        _num(50853, "25-OH Vitamin D", "Blood", "Chemistry", "ng/mL", 0.0049, 25, 12, 30, 100, 0, floor=5),
        _qual(50946, "Human Chorionic Gonadotropin", "Blood", "Chemistry", "mIU/mL", 0.0049, {"<5": 1}),
    ),
    # tumour markers
    *_panel("tumor_markers",
        _num(50900, "Carcinoembyronic Antigen (CEA)", "Blood", "Chemistry", "ng/mL",
             0.088, 4, 2, 0, 3.4, 0, floor=0.8),
        _num(50974, "Prostate Specific Antigen", "Blood", "Chemistry", "ng/mL", 0.049, 2, 1, 0, 4, 1, floor=0.4),
        _num(50898, "Cancer Antigen 27.29", "Blood", "Chemistry", "U/mL", 0.044, 30, 15, 0, 38, 0, floor=6),
        _num(50864, "Alpha-Fetoprotein", "Blood", "Chemistry", "ng/mL", 0.034, 3.2, 1.6, 0, 8.7, 1, floor=0.64),
        _num(50881, "Beta-2 Microglobulin", "Blood", "Chemistry", "mg/L",
             0.0098, 2.15, 0.43, -_INF, _INF, 1, floor=0.43),
        _num(50892, "CA-125", "Blood", "Chemistry", "U/mL", 0.0049, 19, 9.5, -_INF, _INF, 0, floor=3.8),
    ),
    # immunoglobulins, electrophoresis, complement and inflammation markers
    *_panel("immunology",
        _num(50950, "Immunoglobulin G", "Blood", "Chemistry", "mg/dL", 0.11, 1100, 550, 700, 1600, 0, floor=370),
        _qual(50975, "Protein Electrophoresis", "Blood", "Chemistry", None, 0.054,
              {"NO SPECIFIC ABNORMALITIES SEEN": 0.375, "HYPOGAMMAGLOBULINEMIA": 0.375,
               "ABNORMAL BAND IN GAMMA REGION": 0.25}),
        _num(50949, "Immunoglobulin A", "Blood", "Chemistry", "mg/dL", 0.044, 150, 75, 70, 400, 0, floor=30),
        _num(50951, "Immunoglobulin M", "Blood", "Chemistry", "mg/dL", 0.044, 80, 40, 40, 230, 0, floor=16),
        _qual(51098, "Prot. Electrophoresis, Urine", "Urine", "Chemistry", "+/-", 0.039,
              {"MULTIPLE PROTEIN BANDS SEEN, WITH ALBUMIN PREDOMINATING": 0.334, "NO PROTEIN DETECTED": 0.333,
               "NEGATIVE FOR BENCE-JONES PROTEIN": 0.333}),
        _qual(50948, "Immunofixation", "Blood", "Chemistry", None, 0.034, {"NO MONOCLONAL IMMUNOGLOBULIN SEEN": 1}),
        _qual(51086, "Immunofixation, Urine", "Urine", "Chemistry", None, 0.02,
              {"LARGE BAND OF FREE (BENCE JONES) LAMBDA SEEN": 0.334, "NO MONOCLONAL IMMUNOGLOBULIN SEEN": 0.333,
               "A BAND OF MONOCLONAL FREE (BENCE-JONES) KAPPA IS SEEN": 0.333}),
        _num(50889, "C-Reactive Protein", "Blood", "Chemistry", "mg/L", 0.015, 50, 25, 0, 5, 1, floor=10),
        _num(51288, "Sedimentation Rate", "Blood", "Hematology", "mm/hr", 0.015, 40, 30, 0, 20, 0),
        _num(50890, "C3", "Blood", "Chemistry", "mg/dL", 0.0049, 100, 30, 90, 180, 0, floor=20),
        _num(50891, "C4", "Blood", "Chemistry", "mg/dL", 0.0049, 22, 10, 10, 40, 0, floor=4.4),
    ),
    # hepatitis, HIV and autoimmune serology (text results)
    *_panel("serology",
        _qual(50940, "Hepatitis B Surface Antibody", "Blood", "Chemistry", None, 0.11,
              {"POSITIVE": 0.5, "NEGATIVE": 0.3, "POSITIVE,TITER IS >450 MIU/ML": 0.2}),
        _qual(50941, "Hepatitis B Surface Antigen", "Blood", "Chemistry", None, 0.1, {"NEGATIVE": 1}),
        _qual(50942, "Hepatitis B Virus Core Antibody", "Blood", "Chemistry", None, 0.034, {"NEGATIVE": 1}),
        _qual(50943, "Hepatitis C Virus Antibody", "Blood", "Chemistry", None, 0.034,
              {"NEGATIVE": 0.857, "POSITIVE": 0.143}),
        _qual(50873, "Anti-Nuclear Antibody", "Blood", "Chemistry", None, 0.015,
              {"POSITIVE": 0.667, "NEGATIVE": 0.333}),
        _qual(50937, "Hepatitis A Virus Antibody", "Blood", "Chemistry", "Pos/Neg", 0.015,
              {"NEGATIVE": 0.667, "POSITIVE": 0.333}),
        _qual(50939, "Hepatitis B Core Antibody, IgM", "Blood", "Chemistry", None, 0.015, {"POSITIVE": 1}),
        _qual(50871, "Anti-Mitochondrial Antibody", "Blood", "Chemistry", None, 0.0098, {"NEGATIVE": 1}),
        _qual(50874, "Anti-Nuclear Antibody, Titer", "Blood", "Chemistry", None, 0.0098, {"1:320": 0.5, "1:40": 0.5}),
        _qual(50876, "Anti-Smooth Muscle Antibody", "Blood", "Chemistry", None, 0.0049, {"POSITIVE": 1}),
        _qual(50944, "HIV Antibody", "Blood", "Chemistry", None, 0.0049, {"NEGATIVE": 1}),
    ),
    # therapeutic drug levels (censored below or above the assay range)
    *_panel("drug_levels",
        _mixed(51009, "Vancomycin", "Blood", "Chemistry", "ug/mL", 0.86, 17.4, 7.9, 10, 20, 1,
               {"<2.0": 0.011, "<1.7": 0.0057}, floor=2.5),
        _mixed(50967, "Phenytoin", "Blood", "Chemistry", "ug/mL", 0.28, 8.25, 3.9, 10, 20, 1,
               {"<0.6": 0.017, "LESS THAN 0.6": 0.017}, floor=2),
        _mixed(50986, "tacroFK", "Blood", "Chemistry", "ng/mL", 0.26, 8.95, 4.5, 5, 20, 1,
               {"GREATER THAN 30": 0.096, "GREATER THAN 30, DILUTION AVAILABLE UPON REQUEST": 0.019}, floor=1.7),
        _mixed(50961, "Methotrexate", "Blood", "Chemistry", "umol/L", 0.18, 0.08, 0.04, -_INF, _INF, 2,
               {"LESS THAN 0.02": 0.056, "<0.02": 0.028}, floor=0.02),
        _num(50966, "Phenobarbital", "Blood", "Chemistry", "ug/mL", 0.15, 19.5, 9.8, 10, 40, 1, floor=9.7),
        _num(50917, "Digoxin", "Blood", "Chemistry", "ng/mL", 0.088, 0.95, 0.3, 0.9, 2, 1, floor=0.19),
        _mixed(51008, "Valproic Acid", "Blood", "Chemistry", "ug/mL", 0.074, 64, 32, 50, 100, 0,
               {"<3.0": 0.067}, floor=12),
        _mixed(50968, "Phenytoin, Free", "Blood", "Chemistry", "ug/mL", 0.044, 1.7, 0.44, 1, 2, 1,
               {"GREATER THAN 4.0": 0.11}, floor=0.34),
        _num(50969, "Phenytoin, Percent Free", "Blood", "Chemistry", "%", 0.039, 18, 0.74, 8, 14, 0, floor=3.6),
        _num(50929, "Gentamicin", "Blood", "Chemistry", "ug/mL", 0.029, 2.15, 1.1, 5, 10, 1, floor=0.43),
        _mixed(50997, "Tobramycin", "Blood", "Chemistry", "ug/mL", 0.029, 8.9, 1.3, 5, 10, 1,
               {">20": 0.17, "LESS THAN 0.2": 0.17}, floor=1.7),
        _mixed(50978, "Rapamycin", "Blood", "Chemistry", "ng/mL", 0.0098, 6, 3, -_INF, _INF, 1,
               {"LESS THAN 2.0": 0.5}, floor=2),
        _num(50899, "Carbamazepine", "Blood", "Chemistry", "ug/mL", 0.0049, 7.8, 1.6, 4, 12, 1, floor=1.5),
    ),
    # serum and urine toxicology screens
    *_panel("tox",
        _mixed(50922, "Ethanol", "Blood", "Chemistry", "mg/dL", 0.14, 111, 56, 0, 0, 0, {"NEG": 0.93}, floor=10),
        _qual(50879, "Barbiturate Screen", "Blood", "Chemistry", None, 0.13, {"NEG": 0.962, "POS": 0.038}),
        _qual(50880, "Benzodiazepine Screen", "Blood", "Chemistry", None, 0.13, {"NEG": 1}),
        _mixed(50856, "Acetaminophen", "Blood", "Chemistry", "ug/mL", 0.12, 5.5, 0.52, -_INF, _INF, 1,
               {"NEG": 0.88}, floor=2.7),
        _qual(50981, "Salicylate", "Blood", "Chemistry", "mg/dL", 0.12, {"NEG": 1}),
        _qual(50999, "Tricyclic Antidepressant Screen", "Blood", "Chemistry", None, 0.12,
              {"NEG": 0.958, "POS": 0.042}),
        _qual(51071, "Amphetamine Screen, Urine", "Urine", "Chemistry", None, 0.093, {"NEG": 0.947, "POS": 0.053}),
        _qual(51074, "Barbiturate Screen, Urine", "Urine", "Chemistry", None, 0.093, {"NEG": 0.947, "POS": 0.053}),
        _qual(51075, "Benzodiazepine Screen, Urine", "Urine", "Chemistry", None, 0.093, {"NEG": 0.789, "POS": 0.211}),
        _qual(51079, "Cocaine, Urine", "Urine", "Chemistry", None, 0.093, {"NEG": 1}),
        _qual(51090, "Methadone, Urine", "Urine", "Chemistry", None, 0.093, {"NEG": 1}),
        _qual(51092, "Opiate Screen, Urine", "Urine", "Chemistry", None, 0.093, {"NEG": 0.895, "POS": 0.105}),
        _qual(50857, "Acetone", "Blood", "Chemistry", None, 0.0098, {"NEGATIVE": 0.5, "MODERATE": 0.5}),
    ),
    # results without a panel of their own
    *_panel("misc",
        _qual(50920, "Estimated GFR (MDRD equation)", "Blood", "Chemistry", None, 1, {"See Comments": 1}),
        _num(51007, "Uric Acid", "Blood", "Chemistry", "mg/dL", 0.78, 2.4, 1.2, 3.4, 7, 1, floor=0.6),
        _num(50964, "Osmolality, Measured", "Blood", "Chemistry", "mOsm/kg", 0.23, 304, 21, 275, 310, 0, floor=150),
        _num(51289, "Serum Viscosity", "Blood", "Hematology", None, 0.0049, 2.8, 0.56, 1.4, 1.8, 1),
        _qual(51460, "Blood, Occult", "Stool", "Hematology", None, 0.0049, {"NEGATIVE": 1}),
    ),
    # specimen tubes held in the lab for add-on tests; the result is the word HOLD
    *_panel("hold",
        _qual(50979, "Red Top Hold", "Blood", "Chemistry", None, 0.4, {"HOLD": 1}),
        _qual(50933, "Green Top Hold (plasma)", "Blood", "Chemistry", None, 0.34, {"HOLD": 1}),
        _qual(50887, "Blue Top Hold", "Blood", "Chemistry", None, 0.31, {"HOLD": 1}),
        _qual(51523, "GR HOLD", "URINE", "CHEMISTRY", None, 0.18, {"HOLD": 0.973, "DONE": 0.027}),
        _qual(50955, "Light Green Top Hold", "Blood", "Chemistry", None, 0.16, {"HOLD": 1}),
        _qual(50919, "EDTA Hold", "Blood", "Chemistry", None, 0.093, {"HOLD": 1}),
        _qual(51103, "Uhold", "Urine", "Chemistry", None, 0.039, {"HOLD": 1}),
        _qual(50932, "Gray Top Hold (plasma)", "Blood", "Chemistry", None, 0.0049, {"HOLD": 1}),
    ),
    # dipstick and microscopy; dipstick results are mostly NEG / TR / SM / MOD / LG
    *_panel("urinalysis",
        _num(51491, "pH", "Urine", "Hematology", "units", 1.5, 5.5, 1.1, 5, 8, 1, floor=5),
        _mixed(51498, "Specific Gravity", "Urine", "Hematology", None, 1.5, 1.014, 0.006, 1.001, 1.035, 3,
               {"<=1.005": 0.0033, "<1.005": 0.0033, ">1.050": 0.0033, ">1.035": 0.0033}, floor=1.001),
        _mixed(51492, "Protein", "Urine", "Hematology", "mg/dL", 1.5, 30, 52, -_INF, _INF, 0,
               {"NEG": 0.46, "TR": 0.2, ">300": 0.013}),
        _mixed(51484, "Ketone", "Urine", "Hematology", "mg/dL", 1.4, 15, 26, -_INF, _INF, 0,
               {"NEG": 0.75, "TR": 0.16}),
        _mixed(51478, "Glucose", "Urine", "Hematology", "mg/dL", 1.4, 250, 74, -_INF, _INF, 0,
               {"NEG": 0.91, "TR": 0.039}),
        _qual(51506, "Urine Appearance", "Urine", "Hematology", None, 1.4,
              {"Clear": 0.72, "Hazy": 0.145, "Cloudy": 0.089, "SlHazy": 0.039, "CLEAR": 0.007}),
        _qual(51508, "Urine Color", "Urine", "Hematology", None, 1.4,
              {"Yellow": 0.629, "Straw": 0.243, "Amber": 0.086, "LtAmb": 0.021, "Orange": 0.014, "YELLOW": 0.007}),
        _qual(51464, "Bilirubin", "Urine", "Hematology", "EU/dL", 1.4,
              {"NEG": 0.87, "SM": 0.074, "LG": 0.042, "MOD": 0.014}),
        _qual(51466, "Blood", "Urine", "Hematology", "mg/dL", 1.4,
              {"NEG": 0.409, "LG": 0.246, "MOD": 0.109, "TR": 0.102, "SM": 0.085, "LGE": 0.049}),
        _qual(51487, "Nitrite", "Urine", "Hematology", None, 1.4, {"NEG": 0.954, "POS": 0.046}),
        _mixed(51514, "Urobilinogen", "Urine", "Hematology", "mg/dL", 1.4, 1, 1.3, 0.2, 1, 1,
               {"NEG": 0.79}, floor=0.2),
        _qual(51486, "Leukocytes", "Urine", "Hematology", None, 1.4,
              {"NEG": 0.661, "TR": 0.125, "SM": 0.103, "MOD": 0.093, "LG": 0.018}),
        _mixed(51476, "Epithelial Cells", "Urine", "Hematology", "#/hpf", 1.1, 0, 1.5, -_INF, _INF, 0,
               {"0-2": 0.3, "<1": 0.13, "3-5": 0.043, "6-10": 0.0043, ">50": 0.0043, "21-50": 0.0043}),
        _mixed(51493, "RBC", "Urine", "Hematology", "#/hpf", 1.1, 3, 12, 0, 2, 0,
               {"0-2": 0.22, "3-5": 0.12, ">50": 0.073, "6-10": 0.052, "11-20": 0.021, "21-50": 0.021}),
        _qual(51519, "Yeast", "Urine", "Hematology", None, 1.1,
              {"NONE": 0.88, "MANY": 0.034, "MOD": 0.03, "FEW": 0.026, "RARE": 0.017, "OCC": 0.013}),
        _mixed(51516, "WBC", "Urine", "Hematology", "#/hpf", 1.1, 4, 8.1, 0, 5, 0,
               {"0-2": 0.26, "3-5": 0.097, "6-10": 0.057, "11-20": 0.053, ">50": 0.04, "21-50": 0.018}),
        _qual(51463, "Bacteria", "Urine", "Hematology", None, 1.1,
              {"NONE": 0.31, "FEW": 0.222, "MOD": 0.137, "OCC": 0.123, "MANY": 0.123, "RARE": 0.071, "NEG": 0.014}),
        _qual(51512, "Urine Mucous", "Urine", "Hematology", None, 0.3,
              {"RARE": 0.467, "OCC": 0.233, "FEW": 0.167, "MOD": 0.133}),
        _mixed(51482, "Hyaline Casts", "Urine", "Hematology", "#/lpf", 0.21, 5, 6.7, 0, 0, 0,
               {"0-2": 0.26, "6-10": 0.12, "3-5": 0.093, "11-20": 0.047, "<1": 0.023, ">50": 0.023}),
        _qual(51462, "Amorphous Crystals", "Urine", "Hematology", None, 0.13,
              {"FEW": 0.371, "RARE": 0.185, "OCC": 0.185, "MOD": 0.148, "MANY": 0.111}),
        _mixed(51479, "Granular Casts", "Urine", "Hematology", "#/lpf", 0.074, 5, 3.7, 0, 0, 0,
               {"0-2": 0.33, "3-5": 0.2, "0-2 COARSE GRANULAR CASTS": 0.067}),
        _qual(51474, "Eosinophils", "Urine", "Hematology", None, 0.069,
              {"NEGATIVE NO EOS SEEN": 0.714, "POSITIVE RARE EOS": 0.143, "POSITIVE MODERATE EOS": 0.143}),
        _qual(51501, "Transitional Epithelial Cells", "Urine", "Hematology", "#/hpf", 0.054, {"0-2": 0.7, "<1": 0.3}),
        _qual(51505, "Uric Acid Crystals", "Urine", "Hematology", None, 0.029,
              {"RARE": 0.5, "FEW": 0.333, "MANY": 0.167}),
        _qual(51497, "Renal Epithelial Cells", "Urine", "Hematology", "#/hpf", 0.025,
              {"0-2": 0.6, "3-5": 0.2, "<1": 0.2}),
        _qual(51469, "Calcium Oxalate Crystals", "Urine", "Hematology", None, 0.0098, {"FEW": 1}),
        _qual(51513, "Urine Specimen Type", "Urine", "Hematology", None, 0.0098, {"RANDOM": 1}),
        _qual(51518, "WBC Clumps", "Urine", "Hematology", None, 0.0098, {"OCC": 0.5, "MOD": 0.5}),
        _qual(51489, "NonSquamous Epithelial Cell", "Urine", "Hematology", "#/hpf", 0.0049, {"<1": 1}),
        _num(51507, "Urine Casts, Other", "Urine", "Hematology", "#/lpf", 0.0049, 4, 0.8, 0, 0, 0),
        _qual(51517, "WBC Casts", "Urine", "Hematology", "#/lpf", 0.0049, {"0-2": 1}),
    ),
    # spot and timed urine chemistry
    *_panel("urine_chem",
        _qual(51087, "Length of Urine Collection", "Urine", "Chemistry", None, 0.79, {"RANDOM": 1}),
        _num(51082, "Creatinine, Urine", "Urine", "Chemistry", "mg/dL", 0.48, 70, 35, -_INF, _INF, 0, floor=9),
        _mixed(51100, "Sodium, Urine", "Urine", "Chemistry", "mEq/L", 0.45, 39.5, 20, -_INF, _INF, 0,
               {"LESS THAN 10": 0.22}, floor=10),
        _num(51093, "Osmolality, Urine", "Urine", "Chemistry", "mOsm/kg", 0.33, 410, 150, -_INF, _INF, 0, floor=100),
        _num(51104, "Urea Nitrogen, Urine", "Urine", "Chemistry", "mg/dL", 0.22, 503, 250, -_INF, _INF, 0, floor=130),
        _num(51097, "Potassium, Urine", "Urine", "Chemistry", "mEq/L", 0.13, 29.5, 9.6, -_INF, _INF, 0, floor=11),
        _mixed(51078, "Chloride, Urine", "Urine", "Chemistry", "mEq/L", 0.12, 65, 33, -_INF, _INF, 0,
               {"LESS THAN 10": 0.12, "<10": 0.04}, floor=10),
        _num(51102, "Total Protein, Urine", "Urine", "Chemistry", "mg/dL", 0.083, 77, 38, -_INF, _INF, 0, floor=15),
        _num(51099, "Protein/Creatinine Ratio", "Urine", "Chemistry", "Ratio",
             0.059, 0.6, 0.3, 0, 0.2, 1, floor=0.12),
        _num(51094, "pH", "Urine", "Chemistry", None, 0.025, 6, 0.74, -_INF, _INF, 0, floor=5),
        _num(51108, "Urine Volume", "Urine", "Chemistry", "mL", 0.025, 1320, 660, -_INF, _INF, 0, floor=260),
        _qual(51076, "Bicarbonate, Urine", "Urine", "Chemistry", "mEq/L", 0.02, {"LESS THAN 5": 1}),
        _num(51069, "Albumin, Urine", "Urine", "Chemistry", "mg/dL", 0.015, 1.2, 0.6, -_INF, _INF, 1, floor=0.24),
        _num(51070, "Albumin/Creatinine, Urine", "Urine", "Chemistry", "mg/g", 0.015, 14.5, 7.2, 0, 30, 1, floor=2.9),
        _num(51072, "Amylase, Urine", "Urine", "Chemistry", "U/L", 0.0049, 13, 2.6, -_INF, _INF, 0, floor=2.6),
        _num(51073, "Amylase/Creatinine Ratio, Urine", "Urine", "Chemistry",
             "Ratio", 0.0049, 2, 1, -_INF, _INF, 0, floor=0.4),
        _qual(51091, "Myoglobin, Urine", "Urine", "Chemistry", None, 0.0049, {"PRESUMPTIVELY NEGATIVE": 1}),
        _num(51095, "Phosphate, Urine", "Urine", "Chemistry", "mg/dL", 0.0049, 107, 21, -_INF, _INF, 1, floor=21),
        _num(51096, "Porphobilinogen Screen", "Urine", "Chemistry", "+/-",
             0.0049, 1.6, 0.32, -_INF, _INF, 1, floor=0.32),
        _num(51105, "Uric Acid, Urine", "Urine", "Chemistry", "mg/dL", 0.0049, 29.7, 5.9, -_INF, _INF, 1, floor=5.9),
    ),
    # paracentesis fluid
    *_panel("ascites",
        _num(51116, "Lymphocytes", "Ascites", "Hematology", "%", 0.093, 21, 18, 0, 0, 0),
        _num(51120, "Monocytes", "Ascites", "Hematology", "%", 0.093, 10, 24, 0, 0, 0),
        _num(51125, "Polys", "Ascites", "Hematology", "%", 0.093, 8, 39, 0, 0, 0),
        _num(51127, "RBC, Ascites", "Ascites", "Hematology", "#/uL", 0.093, 495, 3700, 0, 0, 0),
        _num(51128, "WBC, Ascites", "Ascites", "Hematology", "#/uL", 0.093, 65, 58, 0, 0, 0),
        _num(51117, "Macrophage", "Ascites", "Hematology", "%", 0.064, 34, 27, 0, 0, 0),
        _num(51118, "Mesothelial Cell", "Ascites", "Hematology", "%", 0.064, 2, 3.7, 0, 0, 0),
        _mixed(50835, "Albumin, Ascites", "Ascites", "Chemistry", "g/dL", 0.054, 1.6, 0.52, -_INF, _INF, 1,
               {"<1.0": 0.18, "LESS THAN 1.0": 0.18, "LESS THAN 0.3": 0.091}, floor=0.32),
        _num(50849, "Total Protein, Ascites", "Ascites", "Chemistry",
             "g/dL", 0.044, 1.4, 0.7, -_INF, _INF, 1, floor=0.27),
        _num(50843, "Lactate Dehydrogenase, Ascites", "Ascites", "Chemistry",
             "IU/L", 0.034, 65, 32, -_INF, _INF, 0, floor=13),
        _num(50842, "Glucose, Ascites", "Ascites", "Chemistry", "mg/dL", 0.029, 120, 17, -_INF, _INF, 0, floor=24),
        _num(50838, "Bilirubin, Total, Ascites", "Ascites",
             "Chemistry", "mg/dL", 0.025, 16.1, 1.9, -_INF, _INF, 1, floor=3.2),
        _num(50841, "Creatinine, Ascites", "Ascites", "Chemistry",
             "mg/dL", 0.025, 2.2, 0.44, -_INF, _INF, 1, floor=0.44),
        _num(51114, "Eosinophils", "Ascites", "Hematology", "%", 0.025, 1, 0.74, 0, 0, 0),
        _num(50836, "Amylase, Ascites", "Ascites", "Chemistry", "IU/L", 0.02, 29.5, 5.9, -_INF, _INF, 0, floor=5.9),
        _num(51122, "Nucleated RBC", "Ascites", "Hematology", "%", 0.0098, 3.5, 3.7, 0, 0, 0),
        _num(51124, "Plasma", "Ascites", "Hematology", "%", 0.0049, 3, 0.6, 0, 0, 0),
    ),
    # thoracentesis fluid
    *_panel("pleural",
        _num(51446, "Lymphocytes", "Pleural", "Hematology", "%", 0.054, 10, 43, 0, 0, 0),
        _num(51450, "Monos", "Pleural", "Hematology", "%", 0.054, 5, 19, 0, 0, 0),
        _num(51455, "Polys", "Pleural", "Hematology", "%", 0.054, 35, 52, 0, 0, 0),
        _num(51457, "RBC, Pleural", "Pleural", "Hematology", "#/uL", 0.054, 5920, 6600, 0, 0, 0),
        _num(51458, "WBC, Pleural", "Pleural", "Hematology", "#/uL", 0.054, 500, 1100, 0, 0, 0),
        _num(51054, "Lactate Dehydrogenase, Pleural", "Pleural", "Chemistry",
             "IU/L", 0.039, 176, 67, -_INF, _INF, 0, floor=35),
        _num(51059, "Total Protein, Pleural", "Pleural", "Chemistry",
             "g/dL", 0.039, 3.15, 0.59, -_INF, _INF, 1, floor=0.63),
        _num(51053, "Glucose, Pleural", "Pleural", "Chemistry", "mg/dL", 0.034, 114, 57, -_INF, _INF, 0, floor=22),
        _num(51448, "Mesothelial Cells", "Pleural", "Hematology", "%", 0.034, 3, 13, 0, 0, 0),
        _num(51447, "Macrophages", "Pleural", "Hematology", "%", 0.029, 9, 6.7, 0, 0, 0),
        _num(51047, "Amylase, Pleural", "Pleural", "Chemistry", "IU/L", 0.02, 2410, 1200, -_INF, _INF, 0, floor=480),
        _num(51046, "Albumin, Pleural", "Pleural", "Chemistry", "g/dL", 0.015, 1.8, 0.36, -_INF, _INF, 1, floor=0.36),
        _num(51060, "Triglycerides, Pleural", "Pleural", "Chemistry",
             "mg/dL", 0.015, 60, 30, -_INF, _INF, 0, floor=12),
        _num(51444, "Eosinophils", "Pleural", "Hematology", "%", 0.015, 1, 1.5, 0, 0, 0),
        _num(51049, "Bilirubin, Total, Pleural", "Pleural",
             "Chemistry", "mg/dL", 0.0098, 1.35, 0.27, -_INF, _INF, 1, floor=0.27),
        _num(51453, "Other", "Pleural", "Hematology", "%", 0.0098, 23, 12, 0, 0, 0),
        _num(51052, "Creatinine, Pleural", "Pleural", "Chemistry",
             "mg/dL", 0.0049, 1.2, 0.24, -_INF, _INF, 1, floor=0.24),
    ),
    # lumbar puncture
    *_panel("csf",
        _num(51351, "Lymphs", "Cerebrospinal Fluid (CSF)", "Hematology", "%", 0.059, 68, 13, -_INF, _INF, 0),
        _num(51355, "Monocytes", "Cerebrospinal Fluid (CSF)", "Hematology", "%", 0.059, 3, 8.9, -_INF, _INF, 0),
        _num(51360, "Polys", "Cerebrospinal Fluid (CSF)", "Hematology", "%", 0.059, 1, 13, -_INF, _INF, 0),
        _num(51362, "RBC, CSF", "Cerebrospinal Fluid (CSF)", "Hematology", "#/uL", 0.059, 15, 4200, 0, 5, 0),
        _num(51363, "WBC, CSF", "Cerebrospinal Fluid (CSF)", "Hematology", "#/uL", 0.059, 2, 24, -_INF, _INF, 0),
        _num(51014, "Glucose, CSF", "Cerebrospinal Fluid (CSF)", "Chemistry",
             "mg/dL", 0.054, 71, 27, -_INF, _INF, 0, floor=14),
        _num(51018, "Total Protein, CSF", "Cerebrospinal Fluid (CSF)", "Chemistry",
             "mg/dL", 0.054, 55, 28, 15, 45, 0, floor=11),
        _num(51015, "Lactate Dehydrogenase, CSF", "Cerebrospinal Fluid (CSF)", "Chemistry",
             "IU/L", 0.0098, 738, 370, -_INF, _INF, 0, floor=140),
        _qual(51017, "PEP, CSF", "Cerebrospinal Fluid (CSF)", "Chemistry", None, 0.0098,
              {"NO OLIGOCLONAL BANDING SEEN": 0.5, "OLIGOCLONAL BANDING IS PRESENT IN THE CSF": 0.5}),
        _num(51347, "Eosinophils", "Cerebrospinal Fluid (CSF)", "Hematology", "%", 0.0098, 1.5, 0.74, -_INF, _INF, 0),
        _num(51352, "Macrophage", "Cerebrospinal Fluid (CSF)", "Hematology", "%", 0.0098, 12, 15, -_INF, _INF, 0),
        _num(51358, "Other", "Cerebrospinal Fluid (CSF)", "Hematology", "%", 0.0098, 91.5, 18, -_INF, _INF, 0),
    ),
    # other body fluids (drains, collections)
    *_panel("body_fluid",
        _num(51427, "Lymphocytes", "Other Body Fluid", "Hematology", "%", 0.049, 6.5, 17, 0, 0, 0),
        _num(51431, "Monos", "Other Body Fluid", "Hematology", "%", 0.049, 1, 4.4, 0, 0, 0),
        _num(51436, "Polys", "Other Body Fluid", "Hematology", "%", 0.049, 71.5, 33, 0, 0, 0),
        _num(51439, "WBC, Other Fluid", "Other Body Fluid", "Hematology", "#/uL", 0.049, 87, 200, 0, 0, 0),
        _num(51438, "RBC, Other Fluid", "Other Body Fluid", "Hematology", "#/uL", 0.044, 5, 1700, 0, 0, 0),
        _num(51428, "Macrophage", "Other Body Fluid", "Hematology", "%", 0.025, 19, 1.5, 0, 0, 0),
        _mixed(51026, "Amylase, Body Fluid", "Other Body Fluid", "Chemistry", "IU/L", 0.015, 30, 6, -_INF, _INF, 0,
               {"<3": 0.33}, floor=6),
        _num(51419, "Eosinophils", "Other Body Fluid", "Hematology", "%", 0.015, 1, 0.74, 0, 0, 0),
        _num(51434, "Other Cell", "Other Body Fluid", "Hematology", "%", 0.015, 1, 14, 0, 0, 0),
        _num(50831, "pH", "Other Body Fluid", "Blood Gas", "units", 0.0098, 7.48, 0.3, -_INF, _INF, 2, floor=6),
        _num(51025, "Albumin, Body Fluid", "Other Body Fluid", "Chemistry",
             "g/dL", 0.0098, 3, 0.6, -_INF, _INF, 1, floor=0.6),
        _num(51034, "Glucose, Body Fluid", "Other Body Fluid", "Chemistry",
             "mg/dL", 0.0098, 46.5, 23, -_INF, _INF, 0, floor=9.3),
        _num(51035, "LD, Body Fluid", "Other Body Fluid", "Chemistry",
             "IU/L", 0.0098, 752, 150, -_INF, _INF, 0, floor=150),
        _num(51043, "Total Protein, Body Fluid", "Other Body Fluid", "Chemistry",
             "g/dL", 0.0098, 4.9, 0.98, -_INF, _INF, 1, floor=0.98),
        _mixed(51422, "Hematocrit, Other Fluid", "Other Body Fluid", "Hematology", "%", 0.0098, 3, 2, -_INF, _INF, 1,
               {"<2": 0.5}, floor=2),
        _num(51429, "Mesothelial cells", "Other Body Fluid", "Hematology", "%", 0.0098, 2.5, 2.2, 0, 0, 0),
        _num(51028, "Bilirubin, Total, Body Fluid", "Other Body Fluid",
             "Chemistry", "mg/dL", 0.0049, 0.3, 0.06, -_INF, _INF, 1, floor=0.06),
        _num(51030, "Chloride, Body Fluid", "Other Body Fluid", "Chemistry",
             "mEq/L", 0.0049, 103, 21, -_INF, _INF, 0, floor=20),
        _num(51032, "Creatinine, Body Fluid", "Other Body Fluid", "Chemistry",
             "mg/dL", 0.0049, 1.4, 0.28, -_INF, _INF, 1, floor=0.27),
        _num(51041, "Potassium, Body Fluid", "Other Body Fluid", "Chemistry",
             "mEq/L", 0.0049, 6.6, 1.3, -_INF, _INF, 1, floor=1.3),
        _num(51042, "Sodium, Body Fluid", "Other Body Fluid", "Chemistry",
             "mEq/L", 0.0049, 109, 22, -_INF, _INF, 0, floor=21),
        _num(51044, "Triglycer", "Other Body Fluid", "Chemistry", "mg/dL",
             0.0049, 36, 7.2, -_INF, _INF, 0, floor=7.2),
        _num(51385, "Atypical Lymphocytes", "Other Body Fluid", "Hematology", "%", 0.0049, 1, 0.2, 0, 0, 0),
    ),
    # arthrocentesis
    *_panel("joint_fluid",
        _num(51375, "Lymphocytes", "Joint Fluid", "Hematology", "%", 0.0098, 23.5, 5.2, -_INF, _INF, 0),
        _num(51379, "Monocytes", "Joint Fluid", "Hematology", "%", 0.0098, 6.5, 9.6, -_INF, _INF, 0),
        _num(51382, "Polys", "Joint Fluid", "Hematology", "%", 0.0098, 59.5, 12, 0, 0, 0),
        _num(51384, "WBC, Joint Fluid", "Joint Fluid", "Hematology", "#/uL", 0.0098, 2030, 2900, 0, 200, 0),
        _num(51369, "Hematocrit, Joint Fluid", "Joint Fluid", "Hematology", "%", 0.0049, 4.5, 0.9, 0, 0, 1),
        _qual(51373, "Joint Crystals, Number", "Joint Fluid", "Hematology", None, 0.0049, {"NONE": 1}),
        _num(51376, "Macrophage", "Joint Fluid", "Hematology", "%", 0.0049, 21, 4.2, -_INF, _INF, 0),
        _num(51383, "RBC, Joint Fluid", "Joint Fluid", "Hematology", "#/uL", 0.0049, 7000, 1400, 0, 0, 0),
    ),
    # flow cytometry markers; MIMIC writes DONE (or D) as the result
    *_panel("flow",
        _qual(51342, "Wright Giemsa", "Bone Marrow", "Hematology", None, 0.02, {"DONE": 1}),
        _qual(51424, "Immunophenotyping", "Other Body Fluid", "Hematology", None, 0.02,
              {"D": 0.5, "NOT DONE": 0.25, "DONE": 0.25}),
        _qual(51152, "CD10", "Blood", "Hematology", None, 0.015, {"DONE": 0.667, "D": 0.333}),
        _qual(51156, "CD13", "Blood", "Hematology", None, 0.015, {"DONE": 0.667, "D": 0.333}),
        _qual(51164, "CD19", "Blood", "Hematology", None, 0.015, {"DONE": 0.667, "D": 0.333}),
        _qual(51168, "CD20", "Blood", "Hematology", None, 0.015, {"DONE": 0.667, "D": 0.333}),
        _mixed(51176, "CD3 Cells, Percent", "Blood", "Hematology", "%", 0.015, 70, 10, -_INF, _INF, 0,
               {"DONE": 0.33, "D": 0.33}),
        _qual(51178, "CD34", "Blood", "Hematology", "%", 0.015, {"DONE": 0.667, "D": 0.333}),
        _mixed(51180, "CD4 Cells, Percent", "Blood", "Hematology", "%", 0.015, 40, 12, -_INF, _INF, 0,
               {"DONE": 0.33, "D": 0.33}),
        _qual(51183, "CD45", "Blood", "Hematology", None, 0.015, {"DONE": 0.667, "D": 0.333}),
        _qual(51184, "CD5", "Blood", "Hematology", None, 0.015, {"DONE": 0.667, "D": 0.333}),
        _mixed(51194, "CD8 Cells, Percent", "Blood", "Hematology", "%", 0.015, 30, 10, -_INF, _INF, 0,
               {"DONE": 0.33, "D": 0.33}),
        _qual(51238, "Kappa", "Blood", "Hematology", None, 0.015, {"DONE": 0.667, "D": 0.333}),
        _qual(51239, "Lambda", "Blood", "Hematology", None, 0.015, {"DONE": 0.667, "D": 0.333}),
        _qual(51388, "CD10", "Other Body Fluid", "Hematology", None, 0.015, {"D": 0.667, "DONE": 0.333}),
        _qual(51398, "CD19", "Other Body Fluid", "Hematology", None, 0.015, {"D": 0.667, "DONE": 0.333}),
        _qual(51400, "CD20", "Other Body Fluid", "Hematology", None, 0.015, {"D": 0.667, "DONE": 0.333}),
        _qual(51411, "CD45", "Other Body Fluid", "Hematology", None, 0.015, {"D": 0.667, "DONE": 0.333}),
        _qual(51425, "Kappa", "Other Body Fluid", "Hematology", None, 0.015, {"D": 0.667, "DONE": 0.333}),
        _qual(51426, "Lambda", "Other Body Fluid", "Hematology", None, 0.015, {"D": 0.667, "DONE": 0.333}),
        _qual(51154, "CD117", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51155, "CD11c", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51158, "CD14", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51159, "CD15", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51167, "CD2", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51177, "CD33", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51182, "CD41", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51188, "CD56", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51191, "CD64", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51192, "CD7", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51193, "CD71", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51217, "Glyco A", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51230, "HLA-DR", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51234, "Immunophenotyping", "Blood", "Hematology", None, 0.0098, {"D": 0.5, "DONE": 0.5}),
        _qual(51303, "CD10", "Bone Marrow", "Hematology", None, 0.0098, {"DONE": 1}),
        _qual(51313, "CD19", "Bone Marrow", "Hematology", None, 0.0098, {"DONE": 1}),
        _qual(51314, "CD2", "Bone Marrow", "Hematology", None, 0.0098, {"DONE": 1}),
        _qual(51319, "CD3", "Bone Marrow", "Hematology", None, 0.0098, {"DONE": 1}),
        _qual(51325, "CD45", "Bone Marrow", "Hematology", None, 0.0098, {"DONE": 1}),
        _qual(51326, "CD5", "Bone Marrow", "Hematology", None, 0.0098, {"DONE": 1}),
        _qual(51332, "CD7", "Bone Marrow", "Hematology", None, 0.0098, {"DONE": 1}),
        _qual(51337, "HLA-DR", "Bone Marrow", "Hematology", None, 0.0098, {"DONE": 1}),
        _qual(51338, "Immunophenotyping", "Bone Marrow", "Hematology", None, 0.0098, {"DONE": 1}),
        _qual(51340, "Kappa", "Bone Marrow", "Hematology", None, 0.0098, {"DONE": 1}),
        _qual(51341, "Lambda", "Bone Marrow", "Hematology", None, 0.0098, {"DONE": 1}),
    ),
)


def _panels(labs: tuple[ExtraLab, ...]) -> dict[str, tuple[int, ...]]:
    out: dict[str, list[int]] = {}
    for lab in labs:
        out.setdefault(lab.panel, []).append(lab.itemid)
    return {name: tuple(ids) for name, ids in out.items()}


PANELS: dict[str, tuple[int, ...]] = _panels(EXTRA_LABS)   # panel -> its item ids, in catalogue order

EXTRA_LAB_INDEX = {lab.itemid: i for i, lab in enumerate(EXTRA_LABS)}


def expected_rows_per_admission(labs: tuple[ExtraLab, ...] = EXTRA_LABS) -> float:
    """Expected LABEVENTS rows of these items in one admission (the sum of draws_per_admission)."""
    return float(sum(lab.draws_per_admission for lab in labs))


def expected_text_rows_per_admission(labs: tuple[ExtraLab, ...] = EXTRA_LABS) -> float:
    """Expected rows with a text VALUE (and an empty VALUENUM) of these items in one admission."""
    return float(sum(lab.draws_per_admission * lab.text_p for lab in labs))


def nonnumeric_share(core_rows_per_admission: float, labs: tuple[ExtraLab, ...] = EXTRA_LABS) -> float:
    """Expected share of LABEVENTS rows with a text VALUE when each admission also has
    `core_rows_per_admission` rows of the (all numeric) core items of `catalog.LABS`."""
    if not (core_rows_per_admission >= 0 and math.isfinite(core_rows_per_admission)):
        raise ValueError(f"core_rows_per_admission must be a finite number >= 0, got {core_rows_per_admission}")
    total = core_rows_per_admission + expected_rows_per_admission(labs)
    return expected_text_rows_per_admission(labs) / total if total > 0 else 0.0
