"""Downstream models of MedM-PLM's Table III / Table VI, one file each (registry:
`medmm.models.downstream.MODELS`). Each file: a config dataclass, its modules, the model, and a
`build(spec, assets, **overrides)` used by the registry."""
