"""Raw sources -> the canonical dataset. One module per raw format, dispatched by name.

    prepare("mimic3", raw_dir, out_dir, mappings={"dir": ...})
    prepare("mimic4", release_dir, out_dir, mappings={...}, icd10_to_icd9=True)
    prepare("mimic-cxr", jpg_root, out_dir, reports=reports_dir, link_ehr=ehr_dataset)

Each builder has the signature of `prepare` minus `source` (plus its own options, declared in
`OPTIONS`) and returns the prepared `CanonicalDataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medmm.data.schema import CanonicalDataset


def _mimic3(*args: Any, **kwargs: Any) -> CanonicalDataset:
    from medmm.data.sources import mimic3  # imported on use: keeps `medmm --help` instant

    return mimic3.prepare(*args, **kwargs)


def _mimic4(*args: Any, **kwargs: Any) -> CanonicalDataset:
    from medmm.data.sources import mimic4

    return mimic4.prepare(*args, **kwargs)


def _mimic_cxr(*args: Any, **kwargs: Any) -> CanonicalDataset:
    from medmm.data.sources import mimic_cxr

    return mimic_cxr.prepare(*args, **kwargs)


# name -> builder(raw, out, mappings, overwrite, progress, include_labs, **options) -> CanonicalDataset
SOURCES: dict[str, Callable[..., CanonicalDataset]] = {
    "mimic3": _mimic3,
    "mimic4": _mimic4,
    "mimic-cxr": _mimic_cxr,
}

# name -> the source-specific keyword options its builder takes
OPTIONS: dict[str, tuple[str, ...]] = {
    "mimic3": (),
    "mimic4": ("icd10_to_icd9", "note_dir"),
    "mimic-cxr": ("reports", "link_ehr"),
}


def prepare(source: str, raw: str | Path, out: str | Path, mappings: Mapping[str, Any] | None = None,
            overwrite: bool = False, progress: bool = True, include_labs: bool = True,
            **options: Any) -> CanonicalDataset:
    """Prepare raw `source` files in `raw` into the canonical dataset at `out`.

    `mappings` holds the drug mapping files: optional keys ``dir``, ``ndc_rxnorm``,
    ``rxnorm_atc``, ``drug_atc`` (see `medmm.ontology.drugs`). `options` are the source's own
    (`OPTIONS`), e.g. ``icd10_to_icd9=True`` for MIMIC-IV.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; available: {sorted(SOURCES)}")
    unknown = sorted(set(options) - set(OPTIONS[source]))
    if unknown:
        raise ValueError(f"source {source!r} does not take option(s) {unknown}; "
                         f"its options: {list(OPTIONS[source]) or 'none'}")
    return SOURCES[source](raw, out, mappings=mappings or {}, overwrite=overwrite,
                           progress=progress, include_labs=include_labs, **options)


__all__ = ["SOURCES", "OPTIONS", "prepare"]
