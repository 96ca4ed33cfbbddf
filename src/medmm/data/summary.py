"""A prepared dataset at a glance: output rows per table, the accounting of every input table,
the drug-mapping rates and the manifest's notes (`medmm prepare` / `medmm summary`)."""

from __future__ import annotations

from medmm.data.schema import Dataset


def format_summary(ds: Dataset) -> str:
    m = ds.manifest
    lines = [f"dataset {ds.path} (source {m.source}, schema {m.schema_version})", "", "output tables:"]
    for table, n in m.tables.items():
        lines.append(f"  {table:<14} {n:>12,}")
    lines += ["", "input accounting (read = kept + dropped):"]
    for name, a in m.accounting.items():
        lines.append(f"  {name:<15} read {a.read:>12,}  kept {a.kept:>12,}  "
                     f"dropped {a.read - a.kept:>10,}" + ("" if a.balanced else "  UNBALANCED"))
        for why, n in sorted(a.dropped.items(), key=lambda kv: -kv[1]):
            lines.append(f"      {why:<28} {n:>12,}")
    dm = m.extra.get("drug_mapping")
    if dm:
        lines += ["", f"drug mapping: {dm['mapped_fraction']:.1%} of {dm['rows']:,} prescriptions mapped "
                      f"to ATC-3 (NDC route {dm['ndc']:,} = {dm['ndc_fraction']:.1%}, name route "
                      f"{dm['name']:,} = {dm['name_fraction']:.1%}, unmapped {dm['unmapped']:,})"]
    if m.notes:
        lines += ["", "notes:"] + [f"  - {n}" for n in m.notes]
    return "\n".join(lines)


def print_summary(ds: Dataset) -> None:
    print(format_summary(ds))
