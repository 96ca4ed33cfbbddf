"""A prepared dataset at a glance: output rows per table, the accounting of every input table,
the ICD versions and mapping rates (drugs -> ATC-3, ICD-10 -> ICD-9) and the manifest's notes
(`medmm prepare` / `medmm summary`)."""

from __future__ import annotations

from medmm.data.schema import CanonicalDataset


def format_summary(ds: CanonicalDataset) -> str:
    m = ds.manifest
    lines = [f"dataset {ds.path} (source {m.source}, schema {m.schema_version})", "", "output tables:"]
    for table, n in m.tables.items():
        lines.append(f"  {table:<14} {n:>12,}")
    lines += ["", "input accounting (read = kept + dropped):"]
    width = max([15, *(len(k) for k in m.accounting)])
    for name, a in m.accounting.items():
        lines.append(f"  {name:<{width}} read {a.read:>12,}  kept {a.kept:>12,}  "
                     f"dropped {a.read - a.kept:>10,}" + ("" if a.balanced else "  UNBALANCED"))
        for why, n in sorted(a.dropped.items(), key=lambda kv: -kv[1]):
            lines.append(f"      {why:<32} {n:>12,}")
    versions = m.extra.get("icd_versions")
    if versions:
        lines += ["", "ICD versions (rows read per icd_version; rows kept per code system):"]
        for name, v in versions.items():
            read = ", ".join(f"ICD-{ver} {n:,}" for ver, n in v["read"].items())
            kept = ", ".join(f"{s} {n:,}" for s, n in v.get("kept_after_icd10_to_icd9", v["kept"]).items())
            lines.append(f"  {name}: read {read}; kept {kept}")
    dm = m.extra.get("drug_mapping")
    if dm:
        lines += ["", f"drug mapping: {dm['mapped_fraction']:.1%} of {dm['rows']:,} prescriptions mapped "
                      f"to ATC-3 (NDC route {dm['ndc']:,} = {dm['ndc_fraction']:.1%}, name route "
                      f"{dm['name']:,} = {dm['name_fraction']:.1%}, unmapped {dm['unmapped']:,})"]
    gem = m.extra.get("icd10_to_icd9")
    if gem:
        lines += ["", f"ICD-10 -> ICD-9 (GEM): {gem['mapped']:,} of {gem['rows']:,} ICD-10 diagnosis rows mapped "
                      f"({gem['mapped_via_parent']:,} through a parent code); unmapped {gem['unmapped']:,} = "
                      f"{gem['unmapped_fraction']:.1%} ({gem['codes_unmapped']:,} of {gem['codes']:,} codes), "
                      f"kept as icd10_dx"]
    if m.notes:
        lines += ["", "notes:"] + [f"  - {n}" for n in m.notes]
    return "\n".join(lines)


def print_summary(ds: CanonicalDataset) -> None:
    print(format_summary(ds))
