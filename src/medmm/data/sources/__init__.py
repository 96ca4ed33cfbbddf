"""Raw sources -> the canonical dataset. One module per raw format, dispatched by name.

    prepare("mimic3", raw_dir, out_dir, mappings={"dir": ...})

Each builder has the signature of `prepare` minus `source` and returns the prepared `Dataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medmm.data.schema import Dataset


def _mimic3(*args: Any, **kwargs: Any) -> Dataset:
    from medmm.data.sources import mimic3  # imported on use: keeps `medmm --help` instant

    return mimic3.prepare(*args, **kwargs)


# name -> builder(raw, out, mappings, overwrite, progress, include_labs) -> Dataset
SOURCES: dict[str, Callable[..., Dataset]] = {
    "mimic3": _mimic3,
}


def prepare(source: str, raw: str | Path, out: str | Path, mappings: Mapping[str, Any] | None = None,
            overwrite: bool = False, progress: bool = True, include_labs: bool = True) -> Dataset:
    """Prepare raw `source` files in `raw` into the canonical dataset at `out`.

    `mappings` holds the drug mapping files: optional keys ``dir``, ``ndc_rxnorm``,
    ``rxnorm_atc``, ``drug_atc`` (see `medmm.ontology.drugs`).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; available: {sorted(SOURCES)}")
    return SOURCES[source](raw, out, mappings=mappings or {}, overwrite=overwrite,
                           progress=progress, include_labs=include_labs)


__all__ = ["SOURCES", "prepare"]
