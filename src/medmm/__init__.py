"""medmm: multimodal medical pre-training that runs end to end.

MedM-PLM (notes + codes, cross-modal attention, masked-code pre-training) is built: pre-training,
the Table III baselines and downstream tasks. MedCSP (six modalities, contrastive pre-training)
is not built yet; only a few of its metrics exist (`medmm.eval.metrics`).

The flow (see DESIGN.md):  sources -> canonical dataset -> tasks -> models -> metrics -> report
    medmm.data.sources   raw MIMIC layouts (and the synthetic generator that writes them)
    medmm.data.schema    the canonical Parquet dataset and its manifest
    medmm.ontology       ICD-9 / ATC trees and drug mappings
    medmm.tasks          downstream task builders (labels, splits, metrics)
    medmm.models         encoders and fusion modules
    medmm.objectives     pre-training losses
    medmm.train          the one training loop
    medmm.eval           metrics and reports
    medmm.recipes        experiments wired end to end
"""

__version__ = "0.1.0"
