"""The generator's clinical vocabulary: diseases, procedures, drug products, labs and vitals.

Everything here is a real code of its system (ICD-9-CM v32 diagnoses and procedures, WHO ATC,
MIMIC-III lab and chart item ids); only the NDCs and RxCUIs are made up, one per drug product, in
the shapes of the real ones (11-digit NDC strings, numeric RxCUI strings) so that the mapping files
written beside the data exercise the same NDC -> RxCUI -> ATC route as GAMENet's public files.

The catalog is pure data. The latent model (`latent.py`) decides who has what; the note writer
(`notes.py`) and the layout writers (`mimic3.py`, later MIMIC-IV / MIMIC-CXR) decide how it shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medmm.data.synth.products import PRODUCTS

# --------------------------------------------------------------------------------------------
# Diseases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disease:
    """One clinical condition of the latent model.

    `codes[s]` is the specific ICD-9-CM code a careful coder would give at severity s (1..3);
    `unspecified` is the lazy code a coder often gives instead (e.g. 250.00 although the note says
    "uncontrolled"), which is one way codes lose what the note keeps (MedM-PLM Fig. 1).
    `code_p` / `note_p`: probability that a present condition is coded / written in the note.
    Conditions that drive 30-day readmission through the code side have high code_p and low
    note_p; the social and severity facts of the note side have no code at all.
    """

    key: str
    name: str                       # full clinical phrase as written in a note
    abbrevs: tuple[str, ...]        # abbreviations a note may use instead ("CHF", "DM2")
    codes: tuple[str, str, str]     # specific ICD-9 code at severity 1, 2, 3 (no dot)
    unspecified: str | None         # unspecified code a coder may use instead
    cluster: str
    code_p: float = 0.9
    note_p: float = 0.85
    misspell: str | None = None     # occasional misspelling in notes
    severity_words: tuple[str, str, str] = ("mild", "moderate", "severe")
    drugs: tuple[str, ...] = ()     # drug keys usually given (chronic home meds or treatment)


def _d(key, name, abbrevs, codes, unspecified, cluster, **kw) -> Disease:
    if isinstance(codes, str):
        codes = (codes, codes, codes)
    return Disease(key, name, tuple(abbrevs), tuple(codes), unspecified, cluster, **kw)


# Chronic conditions: drawn once per patient from the latent factors (latent.py), persisting over
# admissions, with a severity 1..3 and a duration in years.
CHRONIC: tuple[Disease, ...] = (
    _d("htn", "hypertension", ["HTN"], "4019", None, "cardiometabolic",
       misspell="hypertention", drugs=("lisinopril", "amlodipine", "hydrochlorothiazide")),
    _d("dm2", "type 2 diabetes mellitus", ["DM2", "T2DM", "DM"], ("25000", "25002", "25002"), "25000",
       "cardiometabolic", misspell="diabetis", severity_words=("well controlled", "poorly controlled", "uncontrolled"),
       drugs=("metformin", "insulin_glargine", "insulin_regular")),
    _d("dm_neuro", "diabetic peripheral neuropathy", ["diabetic neuropathy"], "3572", None, "cardiometabolic",
       code_p=0.75, note_p=0.6),
    _d("hld", "hyperlipidemia", ["HLD"], "2724", None, "cardiometabolic", code_p=0.8, drugs=("atorvastatin",)),
    _d("obesity", "obesity", ["obese"], ("27800", "27800", "27801"), "27800", "cardiometabolic", code_p=0.5,
       note_p=0.7, severity_words=("mild", "moderate", "morbid")),
    _d("cad", "coronary artery disease", ["CAD"], "41401", None, "cardiometabolic",
       drugs=("aspirin", "metoprolol", "atorvastatin")),
    _d("chf", "congestive heart failure", ["CHF", "HF"], ("42832", "42822", "42822"), "4280", "cardiometabolic",
       severity_words=("compensated", "moderate", "severe"), drugs=("furosemide", "carvedilol", "lisinopril")),
    _d("afib", "atrial fibrillation", ["AFib", "afib", "AF"], "42731", None, "cardiometabolic",
       misspell="atrial fibrilation", drugs=("warfarin", "metoprolol", "diltiazem")),
    _d("ckd", "chronic kidney disease", ["CKD"], ("5853", "5854", "5856"), "5859", "renal",
       code_p=0.95, note_p=0.15, severity_words=("stage 3", "stage 4", "end-stage"),
       drugs=("sevelamer", "calcitriol", "epoetin")),
    _d("anemia", "anemia of chronic disease", ["anemia"], ("2859", "2859", "28521"), "2859", "renal",
       code_p=0.9, note_p=0.15, drugs=("ferrous_sulfate",)),
    _d("copd", "chronic obstructive pulmonary disease", ["COPD"], ("4928", "49120", "49120"), "496",
       "pulmonary", severity_words=("mild", "moderate", "severe oxygen-dependent"),
       drugs=("albuterol", "tiotropium", "fluticasone_salmeterol")),
    _d("asthma", "asthma", ["reactive airway disease"], "49390", None, "pulmonary", code_p=0.8,
       drugs=("albuterol",)),
    _d("osa", "obstructive sleep apnea", ["OSA"], "32723", None, "pulmonary", code_p=0.7, note_p=0.7),
    _d("tobacco", "tobacco use", ["smoker"], "3051", None, "pulmonary", code_p=0.6, note_p=0.9,
       drugs=("nicotine",)),
    _d("lung_ca", "non-small cell lung cancer", ["NSCLC", "lung cancer"], ("1629", "1629", "1977"), "1629",
       "pulmonary", code_p=0.97, note_p=0.15, severity_words=("localized", "locally advanced", "metastatic"),
       drugs=("oxycodone", "ondansetron")),
    _d("alcohol", "alcohol abuse", ["EtOH abuse", "ETOH"], ("30500", "30390", "30390"), "30500", "liver",
       severity_words=("episodic", "heavy", "severe"), drugs=("thiamine", "folic_acid")),
    _d("cirrhosis", "cirrhosis of the liver", ["cirrhosis", "ESLD"], ("5715", "5712", "5712"), "5715", "liver",
       code_p=0.95, note_p=0.15, misspell="cirrhossis", severity_words=("compensated", "Child class B", "decompensated"),
       drugs=("lactulose", "spironolactone", "furosemide")),
    _d("thrombocytopenia", "thrombocytopenia", ["low platelets"], "2875", None, "liver", code_p=0.9, note_p=0.1),
    _d("gerd", "gastroesophageal reflux disease", ["GERD"], "53081", None, "other", code_p=0.7,
       drugs=("omeprazole",)),
    _d("hypothyroid", "hypothyroidism", ["hypothyroid"], "2449", None, "other", code_p=0.8,
       drugs=("levothyroxine",)),
    _d("depression", "depression", ["depression"], "311", None, "other", code_p=0.7, note_p=0.8,
       drugs=("sertraline",)),
    _d("dementia", "dementia", ["dementia"], "2900", None, "other", code_p=0.85, note_p=0.8,
       drugs=("quetiapine",)),
    _d("pvd", "peripheral vascular disease", ["PVD"], "4439", None, "cardiometabolic", code_p=0.8, note_p=0.6,
       drugs=("aspirin", "clopidogrel")),
)

# Acute conditions: drawn per admission from the reason for admission, the chronic state and the
# visit's acuity. Severity is the visit's (1..3).
ACUTE: tuple[Disease, ...] = (
    _d("pneumonia", "community acquired pneumonia", ["PNA", "pneumonia"], "486", "486", "infection",
       misspell="pnuemonia", drugs=("ceftriaxone", "azithromycin", "levofloxacin")),
    _d("sepsis", "sepsis", ["sepsis"], ("99591", "99591", "99592"), "99591", "infection",
       drugs=("vancomycin", "pip_tazo", "cefepime")),
    _d("septicemia", "bacteremia", ["bacteremia"], "0389", "0389", "infection", code_p=0.9, note_p=0.5),
    _d("uti", "urinary tract infection", ["UTI"], "5990", "5990", "infection", drugs=("ceftriaxone", "nitrofurantoin")),
    _d("cellulitis", "cellulitis of the leg", ["cellulitis"], "6826", "6826", "infection", drugs=("vancomycin",)),
    _d("cdiff", "Clostridium difficile colitis", ["C. diff colitis"], "00845", "00845", "infection",
       drugs=("metronidazole",)),
    _d("chf_exac", "acute on chronic heart failure exacerbation", ["CHF exacerbation"], ("42833", "42833", "42823"),
       "4280", "cardiometabolic", drugs=("furosemide",)),
    _d("copd_exac", "COPD exacerbation", ["COPD flare"], "49121", "496", "pulmonary",
       drugs=("methylprednisolone", "prednisone", "ipratropium", "azithromycin")),
    _d("ami", "non-ST elevation myocardial infarction", ["NSTEMI"], "41071", "41090", "cardiometabolic",
       drugs=("heparin", "aspirin", "clopidogrel", "nitroglycerin", "atorvastatin")),
    _d("stroke", "ischemic stroke", ["CVA", "stroke"], "43491", "436", "neuro", drugs=("aspirin", "atorvastatin")),
    _d("gi_bleed", "upper gastrointestinal bleed", ["UGIB", "GI bleed"], "5789", "5789", "liver",
       drugs=("pantoprazole", "octreotide")),
    _d("hep_enceph", "hepatic encephalopathy", ["HE"], "5722", "5722", "liver", drugs=("lactulose", "rifaximin")),
    _d("dka", "diabetic ketoacidosis", ["DKA"], "25012", "25010", "cardiometabolic",
       drugs=("insulin_regular", "potassium_chloride")),
    _d("pe", "pulmonary embolism", ["PE"], "41519", "41519", "pulmonary", drugs=("heparin", "warfarin")),
    _d("hip_fx", "hip fracture after a fall", ["hip fracture"], "82021", "82020", "other",
       drugs=("oxycodone", "enoxaparin")),
    # Complications of the stay.
    _d("aki", "acute kidney injury", ["AKI", "ARF"], "5849", "5849", "renal", drugs=("sodium_bicarbonate",)),
    _d("resp_failure", "acute respiratory failure", ["hypoxic respiratory failure"], "51881", "51881", "pulmonary"),
    _d("septic_shock", "septic shock", ["septic shock"], "78552", "78552", "infection",
       drugs=("norepinephrine", "vasopressin")),
    _d("cardiogenic_shock", "cardiogenic shock", ["cardiogenic shock"], "78551", "78551", "cardiometabolic",
       drugs=("norepinephrine",)),
    _d("hyperkalemia", "hyperkalemia", ["hyperK"], "2767", "2767", "renal", code_p=0.8, note_p=0.6),
    _d("hyponatremia", "hyponatremia", ["hypoNa"], "2761", "2761", "renal", code_p=0.9, note_p=0.15),
    _d("acidosis", "metabolic acidosis", ["acidosis"], "2762", "2762", "renal", code_p=0.8, note_p=0.5),
    _d("delirium", "delirium", ["altered mental status"], "2930", "2930", "neuro", code_p=0.6, note_p=0.8,
       drugs=("haloperidol",)),
    _d("blood_loss_anemia", "acute blood loss anemia", ["ABLA"], "2851", "2851", "liver", code_p=0.85, note_p=0.6),
)

# E-codes and V-codes recorded with some conditions (they exercise the 4-character E-code
# categories of the ICD-9 tree and the V-code chapter).
STATUS_CODES = {
    "fall": "E8889",              # fall, unspecified (with hip_fx)
    "insulin": "V5867",           # long-term (current) use of insulin
    "anticoag": "V5861",          # long-term (current) use of anticoagulants
    "dialysis": "V4511",          # renal dialysis status
    "dnr": "V4986",               # do not resuscitate status
    "tobacco_hx": "V1582",        # history of tobacco use
}

DISEASES: tuple[Disease, ...] = CHRONIC + ACUTE
CHRONIC_INDEX = {d.key: i for i, d in enumerate(CHRONIC)}
ACUTE_INDEX = {d.key: i for i, d in enumerate(ACUTE)}
DISEASE_BY_KEY = {d.key: d for d in DISEASES}

# Reasons for admission (index into ACUTE), with the chief complaint and symptoms a note gives.
# Each reason's prior weight is raised by the chronic conditions listed (latent.py).
@dataclass(frozen=True)
class Reason:
    acute: str
    complaint: str
    symptoms: tuple[str, ...]
    base_w: float
    boost: tuple[tuple[str, float], ...] = ()
    acuity: float = 0.0           # mean shift of the visit's acuity
    service: str = "MEDICINE"


REASONS: tuple[Reason, ...] = (
    Reason("pneumonia", "fever and productive cough", ("fever", "productive cough", "shortness of breath"), 1.4,
           (("copd", 1.0), ("dementia", 0.8), ("lung_ca", 0.8)), 0.2),
    Reason("sepsis", "fever and hypotension", ("fever", "chills", "confusion"), 0.9,
           (("dm2", 0.4), ("cirrhosis", 0.7), ("ckd", 0.5)), 0.9),
    Reason("uti", "dysuria and confusion", ("dysuria", "confusion"), 0.6, (("dementia", 0.8),), -0.2),
    Reason("cellulitis", "leg redness and swelling", ("leg swelling", "redness"), 0.5,
           (("dm2", 0.6), ("obesity", 0.6), ("pvd", 0.5)), -0.4),
    Reason("cdiff", "diarrhea", ("diarrhea", "abdominal pain"), 0.25, (), -0.1),
    Reason("chf_exac", "shortness of breath", ("shortness of breath", "orthopnea", "leg swelling"), 0.2,
           (("chf", 3.0),), 0.1),
    Reason("copd_exac", "shortness of breath and wheezing", ("wheezing", "shortness of breath"), 0.1,
           (("copd", 2.8),), 0.0),
    Reason("ami", "chest pain", ("chest pain", "diaphoresis"), 0.5, (("cad", 1.5), ("dm2", 0.4)), 0.4,
           "CARDIOLOGY"),
    Reason("stroke", "left sided weakness", ("weakness", "slurred speech"), 0.5, (("afib", 1.0), ("htn", 0.3)), 0.3,
           "NEUROLOGY"),
    Reason("gi_bleed", "coffee ground emesis", ("hematemesis", "melena"), 0.4, (("cirrhosis", 2.0), ("alcohol", 0.8)),
           0.4),
    Reason("hep_enceph", "confusion", ("confusion", "somnolence"), 0.05, (("cirrhosis", 2.5),), 0.2),
    Reason("dka", "nausea and vomiting", ("nausea", "vomiting", "polyuria"), 0.05, (("dm2", 2.0),), 0.3),
    Reason("pe", "pleuritic chest pain", ("shortness of breath", "pleuritic chest pain"), 0.3, (("lung_ca", 1.2),),
           0.3),
    Reason("hip_fx", "fall with hip pain", ("hip pain",), 0.4, (("dementia", 1.0),), -0.2, "ORTHOPAEDICS"),
)
REASON_INDEX = {r.acute: i for i, r in enumerate(REASONS)}

# Negated symptoms and findings a note may add as noise ("denies chest pain").
NEGATABLE = ("chest pain", "fever", "shortness of breath", "abdominal pain", "headache", "nausea", "vomiting",
             "diarrhea", "dysuria", "palpitations", "melena", "syncope")
# Family-history problems (noise: in the note, not in the patient).
FAMILY = ("CHF", "coronary artery disease", "type 2 diabetes", "breast cancer", "colon cancer", "stroke",
          "hypertension", "lung cancer", "dementia", "alcoholism")

# --------------------------------------------------------------------------------------------
# Procedures (ICD-9-CM volume 3)
# --------------------------------------------------------------------------------------------

PROCEDURES = {
    "intubation": ("9604", "endotracheal intubation"),
    "vent_short": ("9671", "mechanical ventilation"),
    "vent_long": ("9672", "prolonged mechanical ventilation"),
    "central_line": ("3893", "central venous catheter placement"),
    "art_line": ("3891", "arterial line placement"),
    "hemodialysis": ("3995", "hemodialysis"),
    "transfusion": ("9904", "transfusion of packed red blood cells"),
    "egd": ("4513", "upper endoscopy"),
    "cath": ("3722", "cardiac catheterization"),
    "pci": ("0066", "percutaneous coronary intervention"),
    "paracentesis": ("5491", "paracentesis"),
    "hip_repair": ("7935", "open reduction and internal fixation of the hip"),
}

# --------------------------------------------------------------------------------------------
# Drugs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drug:
    """One drug product as PRESCRIPTIONS shows it (DRUG, strength, dose, route) with its real ATC-5.

    `ndc` is a made-up 11-digit NDC; `mapped` False marks products whose NDC the mapping file
    deliberately omits (a drug coded only by name, like a fraction of real MIMIC rows).
    """

    key: str
    drug: str                 # DRUG column (MIMIC's display name)
    atc: str                  # real ATC level-5 code
    strength: str             # PROD_STRENGTH
    dose: str                 # DOSE_VAL_RX
    unit: str                 # DOSE_UNIT_RX
    form_val: str
    form_unit: str
    route: str
    freq: str                 # frequency written in discharge medications
    ndc: str
    rxcui: str
    mapped: bool = True
    drug_type: str = "MAIN"
    discharge: bool = True    # may appear in discharge medications (ICU-only drugs do not)
    formulary: str = field(default="")
    weight: float = 0.0       # long-tail products (products.py): relative prescribing frequency
    generic: str = ""         # long-tail products: the generic name a note writes


_DRUG_ROWS = [
    # key, DRUG, ATC5, strength, dose, unit, form_val, form_unit, route, freq, discharge
    ("metformin", "Metformin (Glucophage)", "A10BA02", "500mg Tablet", "500", "mg", "1", "TAB", "PO", "twice daily", True),
    ("insulin_glargine", "Insulin Glargine", "A10AE04", "100 Units / mL", "20", "UNIT", "0.2", "mL", "SC", "at bedtime", True),
    ("insulin_regular", "Insulin Regular Human", "A10AB01", "100 Units / mL", "4", "UNIT", "0.04", "mL", "SC", "with meals per sliding scale", True),
    ("furosemide", "Furosemide", "C03CA01", "40mg Tab", "40", "mg", "1", "TAB", "PO", "daily", True),
    ("spironolactone", "Spironolactone", "C03DA01", "25mg Tab", "25", "mg", "1", "TAB", "PO", "daily", True),
    ("hydrochlorothiazide", "Hydrochlorothiazide", "C03AA03", "25mg Tab", "25", "mg", "1", "TAB", "PO", "daily", True),
    ("metoprolol", "Metoprolol Tartrate", "C07AB02", "25mg Tab", "25", "mg", "1", "TAB", "PO", "twice daily", True),
    ("carvedilol", "Carvedilol", "C07AG02", "6.25mg Tab", "6.25", "mg", "1", "TAB", "PO", "twice daily", True),
    ("lisinopril", "Lisinopril", "C09AA03", "10mg Tab", "10", "mg", "1", "TAB", "PO", "daily", True),
    ("losartan", "Losartan Potassium", "C09CA01", "50mg Tab", "50", "mg", "1", "TAB", "PO", "daily", True),
    ("amlodipine", "Amlodipine", "C08CA01", "5mg Tab", "5", "mg", "1", "TAB", "PO", "daily", True),
    ("diltiazem", "Diltiazem", "C08DB01", "30mg Tab", "30", "mg", "1", "TAB", "PO", "four times daily", True),
    ("digoxin", "Digoxin", "C01AA05", "125mcg Tab", "0.125", "mg", "1", "TAB", "PO", "daily", True),
    ("amiodarone", "Amiodarone HCl", "C01BD01", "200mg Tab", "200", "mg", "1", "TAB", "PO", "daily", True),
    ("nitroglycerin", "Nitroglycerin SL", "C01DA02", "0.4mg SL Tab", "0.4", "mg", "1", "TAB", "SL", "as needed for chest pain", True),
    ("atorvastatin", "Atorvastatin", "C10AA05", "40mg Tab", "40", "mg", "1", "TAB", "PO", "daily", True),
    ("aspirin", "Aspirin", "B01AC06", "81mg Tab", "81", "mg", "1", "TAB", "PO", "daily", True),
    ("clopidogrel", "Clopidogrel Bisulfate", "B01AC04", "75mg Tab", "75", "mg", "1", "TAB", "PO", "daily", True),
    ("heparin", "Heparin", "B01AB01", "5000 Units / mL- 1mL Vial", "5000", "UNIT", "1", "mL", "SC", "three times daily", False),
    ("enoxaparin", "Enoxaparin Sodium", "B01AB05", "40mg / 0.4mL Syringe", "40", "mg", "0.4", "mL", "SC", "daily", True),
    ("warfarin", "Warfarin", "B01AA03", "5mg Tab", "5", "mg", "1", "TAB", "PO", "daily", True),
    ("vancomycin", "Vancomycin", "J01XA01", "1g Frozen Bag", "1000", "mg", "1", "BAG", "IV", "every 12 hours", False),
    ("ceftriaxone", "CeftriaXONE", "J01DD04", "1gm Vial", "1", "gm", "1", "VIAL", "IV", "daily", False),
    ("cefepime", "Cefepime", "J01DE01", "2g Vial", "2", "gm", "1", "VIAL", "IV", "every 12 hours", False),
    ("pip_tazo", "Piperacillin-Tazobactam Na", "J01CR05", "4.5 g Vial", "4.5", "g", "1", "VIAL", "IV", "every 8 hours", False),
    ("levofloxacin", "Levofloxacin", "J01MA12", "750mg Tab", "750", "mg", "1", "TAB", "PO", "daily", True),
    ("azithromycin", "Azithromycin", "J01FA10", "250 mg Tab", "250", "mg", "1", "TAB", "PO", "daily", True),
    ("metronidazole", "Metronidazole", "J01XD01", "500mg Tab", "500", "mg", "1", "TAB", "PO", "three times daily", True),
    ("nitrofurantoin", "Nitrofurantoin (Macrodantin)", "J01XE01", "100mg Cap", "100", "mg", "1", "CAP", "PO", "twice daily", True),
    ("acetaminophen", "Acetaminophen", "N02BE01", "325mg Tablet", "650", "mg", "2", "TAB", "PO", "every 6 hours as needed", True),
    ("oxycodone", "OxycoDONE (Immediate Release)", "N02AA05", "5mg Tablet", "5", "mg", "1", "TAB", "PO", "every 4 hours as needed", True),
    ("morphine", "Morphine Sulfate", "N02AA01", "2mg Syringe", "2", "mg", "1", "SYR", "IV", "every 4 hours as needed", False),
    ("albuterol", "Albuterol 0.083% Neb Soln", "R03AC02", "2.5mg/3mL Neb", "1", "NEB", "1", "NEB", "IH", "every 4 hours as needed", True),
    ("ipratropium", "Ipratropium Bromide Neb", "R03BB01", "0.5mg/2.5mL Neb", "1", "NEB", "1", "NEB", "IH", "every 6 hours", True),
    ("tiotropium", "Tiotropium Bromide", "R03BB04", "18mcg Cap", "1", "CAP", "1", "CAP", "IH", "daily", True),
    ("fluticasone_salmeterol", "Fluticasone-Salmeterol (250/50)", "R03AK06", "250/50 Diskus", "1", "INH", "1", "INH", "IH", "twice daily", True),
    ("prednisone", "PredniSONE", "H02AB07", "20mg Tab", "40", "mg", "2", "TAB", "PO", "daily", True),
    ("methylprednisolone", "Methylprednisolone Sodium Succ", "H02AB04", "125mg Vial", "125", "mg", "1", "VIAL", "IV", "every 8 hours", False),
    ("pantoprazole", "Pantoprazole", "A02BC02", "40mg Tab", "40", "mg", "1", "TAB", "PO", "twice daily", True),
    ("omeprazole", "Omeprazole", "A02BC01", "20mg Cap", "20", "mg", "1", "CAP", "PO", "daily", True),
    ("lactulose", "Lactulose", "A06AD11", "30mL UD Cup", "30", "mL", "1", "UDCUP", "PO", "three times daily", True),
    ("rifaximin", "Rifaximin", "A07AA11", "550mg Tab", "550", "mg", "1", "TAB", "PO", "twice daily", True),
    ("docusate", "Docusate Sodium", "A06AA02", "100mg Cap", "100", "mg", "1", "CAP", "PO", "twice daily", True),
    ("senna", "Senna", "A06AB06", "8.6mg Tab", "8.6", "mg", "1", "TAB", "PO", "at bedtime as needed", True),
    ("levothyroxine", "Levothyroxine Sodium", "H03AA01", "50mcg Tab", "50", "mcg", "1", "TAB", "PO", "daily", True),
    ("sertraline", "Sertraline", "N06AB06", "50mg Tab", "50", "mg", "1", "TAB", "PO", "daily", True),
    ("quetiapine", "QUEtiapine Fumarate", "N05AH04", "25mg Tab", "25", "mg", "1", "TAB", "PO", "at bedtime", True),
    ("haloperidol", "Haloperidol", "N05AD01", "5mg/mL Vial", "2", "mg", "0.4", "mL", "IV", "every 6 hours as needed", False),
    ("lorazepam", "Lorazepam", "N05BA06", "1mg Tab", "1", "mg", "1", "TAB", "PO", "every 8 hours as needed", False),
    ("norepinephrine", "NORepinephrine", "C01CA03", "4mg/250mL Premix", "0.1", "mcg/kg/min", "1", "BAG", "IV DRIP", "", False),
    ("vasopressin", "Vasopressin", "H01BA01", "20 Units / mL Vial", "2.4", "UNIT/hr", "1", "VIAL", "IV DRIP", "", False),
    ("potassium_chloride", "Potassium Chloride", "A12BA01", "20mEq Packet", "40", "mEq", "2", "PKT", "PO", "once", False),
    ("magnesium_sulfate", "Magnesium Sulfate", "A12CC02", "1gm/2ml vial", "2", "gm", "4", "ml", "IV", "once", False),
    ("sodium_bicarbonate", "Sodium Bicarbonate", "B05XA02", "650mg Tab", "650", "mg", "1", "TAB", "PO", "twice daily", True),
    ("thiamine", "Thiamine", "A11DA01", "100mg Tab", "100", "mg", "1", "TAB", "PO", "daily", True),
    ("folic_acid", "FoLIC Acid", "B03BB01", "1mg Tab", "1", "mg", "1", "TAB", "PO", "daily", True),
    ("ferrous_sulfate", "Ferrous Sulfate", "B03AA07", "325mg Tab", "325", "mg", "1", "TAB", "PO", "daily", True),
    ("epoetin", "Epoetin Alfa", "B03XA01", "10,000 Units / mL Vial", "10000", "UNIT", "1", "mL", "SC", "weekly", True),
    ("sevelamer", "Sevelamer Carbonate", "V03AE02", "800mg Tab", "800", "mg", "1", "TAB", "PO", "three times daily with meals", True),
    ("calcitriol", "Calcitriol", "A11CC04", "0.25mcg Cap", "0.25", "mcg", "1", "CAP", "PO", "daily", True),
    ("nicotine", "Nicotine Patch", "N07BA01", "21mg/24hr Patch", "1", "PTCH", "1", "PTCH", "TD", "daily", True),
    ("ondansetron", "Ondansetron", "A04AA01", "4mg/2mL Vial", "4", "mg", "2", "mL", "IV", "every 8 hours as needed", True),
    ("octreotide", "Octreotide Acetate", "H01CB02", "50mcg/mL Vial", "50", "mcg", "1", "mL", "IV DRIP", "", False),
    ("glipizide", "GlipiZIDE", "A10BB07", "5mg Tab", "5", "mg", "1", "TAB", "PO", "daily", True),
]

# Hospital-wide drugs most admissions receive regardless of diagnosis (DVT prophylaxis, bowel
# regimen, analgesia, acid suppression) - they make the medication vocabulary realistic and noisy.
ROUTINE_DRUGS = ("heparin", "docusate", "senna", "acetaminophen", "pantoprazole", "ondansetron",
                 "potassium_chloride", "magnesium_sulfate", "lorazepam", "morphine")

# Base solutions: real MIMIC writes many with NDC "0"; their names map to ATC only partly
# (sterile water has no ATC), which the name-route mapping file reflects.
_BASE_ROWS = [
    # key, DRUG, ATC5 (None = no ATC), strength, dose, unit
    ("ns", "NS", "B05XA03", "1000mL Bag", "1000", "ml"),
    ("d5w", "D5W", "B05BA03", "250mL Bag", "250", "ml"),
    ("sw", "SW", None, "100mL Bag", "100", "ml"),
]


def _ndc(i: int, variant: int = 0) -> str:
    # Made-up 11-digit (5-4-2) NDCs in a labeler range real products do not use, stable per index.
    return f"{99100 + variant:05d}{(i * 37 + 101) % 10000:04d}{(i * 7 + 11) % 100:02d}"


def _build_drugs() -> tuple[Drug, ...]:
    drugs = []
    for i, (key, name, atc, strength, dose, unit, fval, funit, route, freq, disch) in enumerate(_DRUG_ROWS):
        drugs.append(Drug(key, name, atc, strength, dose, unit, fval, funit, route, freq,
                          ndc=_ndc(i), rxcui=str(9_100_000 + i * 13), discharge=disch,
                          formulary=(key[:6] + dose.replace(".", "")[:3]).upper()))
    # A second package of a few common drugs whose NDC the mapping file omits on purpose: those
    # rows can only be mapped through the drug name (mimic_drug_to_atc.csv).
    for i, key in enumerate(("furosemide", "aspirin", "metoprolol", "pantoprazole", "vancomycin")):
        d = next(x for x in drugs if x.key == key)
        drugs.append(Drug(key + "_alt", d.drug, d.atc, d.strength, d.dose, d.unit, d.form_val, d.form_unit,
                          d.route, d.freq, ndc=_ndc(i + 500, variant=1), rxcui="", mapped=False,
                          discharge=False, formulary=d.formulary + "A"))
    for j, (key, name, atc, strength, dose, unit) in enumerate(_BASE_ROWS):
        drugs.append(Drug(key, name, atc or "", strength, dose, unit, dose, unit, "IV", "", ndc="0", rxcui="",
                          mapped=False, drug_type="BASE", discharge=False, formulary=name.upper() + dose))
    # The long tail (products.py), after the drugs above so that their indices and NDCs stay put.
    first = len(drugs)
    for j, x in enumerate(PRODUCTS):
        i = first + j
        drugs.append(Drug(f"tail{j:03d}", x.drug, x.atc, x.strength, x.dose, x.unit, x.form_val, x.form_unit,
                          x.route, x.freq, ndc=_ndc(i), rxcui=str(9_100_000 + i * 13), discharge=x.discharge,
                          formulary=(x.generic.replace(" ", "")[:6] + x.dose.replace(".", "")[:3]).upper(),
                          weight=x.weight, generic=x.generic))
    return tuple(drugs)


DRUGS: tuple[Drug, ...] = _build_drugs()
DRUG_INDEX = {d.key: i for i, d in enumerate(DRUGS)}
ALT_OF = {d.key[:-4]: DRUG_INDEX[d.key] for d in DRUGS if d.key.endswith("_alt")}
BASE_DRUGS = tuple(DRUG_INDEX[k] for k, *_ in _BASE_ROWS)
TAIL_DRUGS = tuple(i for i, d in enumerate(DRUGS) if d.weight > 0)

# --------------------------------------------------------------------------------------------
# Labs (LABEVENTS) and vitals (CHARTEVENTS), with MIMIC-III item ids
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabItem:
    key: str
    itemid: int
    label: str
    unit: str | None
    mean: float              # healthy mean
    sd: float                # between-draw noise
    low: float               # reference range for FLAG "abnormal"
    high: float
    decimals: int
    floor: float             # physiological floor (values are clipped here)
    panel: str               # "basic" drawn with every draw, "extended" at "mimic" density, ...


LABS: tuple[LabItem, ...] = (
    LabItem("creatinine", 50912, "Creatinine", "mg/dL", 0.9, 0.08, 0.5, 1.1, 1, 0.2, "basic"),
    LabItem("bun", 51006, "Urea Nitrogen", "mg/dL", 15, 2.5, 6, 20, 0, 2, "basic"),
    LabItem("potassium", 50971, "Potassium", "mEq/L", 4.1, 0.3, 3.3, 5.1, 1, 2.0, "basic"),
    LabItem("sodium", 50983, "Sodium", "mEq/L", 139, 2.0, 133, 145, 0, 110, "basic"),
    LabItem("chloride", 50902, "Chloride", "mEq/L", 102, 2.5, 96, 108, 0, 80, "basic"),
    LabItem("bicarbonate", 50882, "Bicarbonate", "mEq/L", 25, 2.0, 22, 32, 0, 5, "basic"),
    LabItem("glucose", 50931, "Glucose", "mg/dL", 105, 12, 70, 105, 0, 30, "basic"),
    LabItem("hemoglobin", 51222, "Hemoglobin", "g/dL", 13.0, 0.4, 12.0, 16.0, 1, 4.0, "basic"),
    LabItem("hematocrit", 51221, "Hematocrit", "%", 39.0, 1.2, 36.0, 48.0, 1, 12.0, "basic"),
    LabItem("platelets", 51265, "Platelet Count", "K/uL", 250, 20, 150, 440, 0, 5, "basic"),
    LabItem("wbc", 51301, "White Blood Cells", "K/uL", 7.5, 0.8, 4.0, 11.0, 1, 0.3, "basic"),
    LabItem("anion_gap", 50868, "Anion Gap", "mEq/L", 12, 1.5, 8, 20, 0, 3, "basic"),
    LabItem("magnesium", 50960, "Magnesium", "mg/dL", 2.0, 0.15, 1.6, 2.6, 1, 0.8, "extended"),
    LabItem("calcium", 50893, "Calcium, Total", "mg/dL", 9.0, 0.3, 8.4, 10.3, 1, 5.0, "extended"),
    LabItem("phosphate", 50970, "Phosphate", "mg/dL", 3.5, 0.4, 2.7, 4.5, 1, 0.8, "extended"),
    LabItem("inr", 51237, "INR(PT)", None, 1.1, 0.08, 0.9, 1.1, 1, 0.8, "extended"),
    LabItem("ptt", 51275, "PTT", "sec", 30, 2.5, 22, 35, 1, 18, "extended"),
    LabItem("lactate", 50813, "Lactate", "mmol/L", 1.3, 0.25, 0.5, 2.0, 1, 0.3, "critical"),
    LabItem("ph", 50820, "pH", "units", 7.40, 0.02, 7.35, 7.45, 2, 6.8, "critical"),
    LabItem("pco2", 50818, "pCO2", "mm Hg", 40, 3, 35, 45, 0, 15, "critical"),
    LabItem("po2", 50821, "pO2", "mm Hg", 90, 10, 85, 105, 0, 30, "critical"),
    LabItem("bilirubin", 50885, "Bilirubin, Total", "mg/dL", 0.6, 0.1, 0.0, 1.5, 1, 0.1, "liver"),
    LabItem("alt", 50861, "Alanine Aminotransferase (ALT)", "IU/L", 25, 5, 0, 40, 0, 4, "liver"),
    LabItem("ast", 50878, "Asparate Aminotransferase (AST)", "IU/L", 28, 5, 0, 40, 0, 5, "liver"),
    LabItem("albumin", 50862, "Albumin", "g/dL", 3.9, 0.2, 3.4, 4.8, 1, 1.2, "liver"),
    LabItem("troponin", 51003, "Troponin T", "ng/mL", 0.01, 0.005, 0.0, 0.01, 2, 0.01, "cardiac"),
    LabItem("ntprobnp", 50963, "NTproBNP", "pg/mL", 120, 30, 0, 300, 0, 10, "cardiac"),
)
LAB_INDEX = {lab.key: i for i, lab in enumerate(LABS)}


@dataclass(frozen=True)
class VitalItem:
    key: str
    carevue: int             # CareVue ITEMID
    metavision: int          # MetaVision ITEMID
    unit_cv: str
    unit_mv: str
    mean: float
    sd: float
    decimals: int


VITALS: tuple[VitalItem, ...] = (
    VitalItem("hr", 211, 220045, "BPM", "bpm", 82, 6, 0),
    VitalItem("sbp", 455, 220179, "mmHg", "mmHg", 124, 8, 0),
    VitalItem("mbp", 456, 220181, "mmHg", "mmHg", 82, 6, 0),
    VitalItem("spo2", 646, 220277, "%", "%", 97, 1.2, 0),
    VitalItem("rr", 618, 220210, "BPM", "insp/min", 17, 2.0, 0),
    VitalItem("temp", 678, 223761, "Deg. F", "?F", 98.4, 0.4, 1),
)
VITAL_INDEX = {v.key: i for i, v in enumerate(VITALS)}


def atc3(atc: str) -> str:
    """ATC level 3 (pharmacological subgroup) = the first 4 characters, e.g. C07AB02 -> C07A."""
    return atc[:4]
