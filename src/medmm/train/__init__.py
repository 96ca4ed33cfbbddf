"""The one training loop (pre-training and fine-tuning), its checkpoints and data parallelism.

    from medmm.train import Trainer, TrainConfig
    result = Trainer(model, train_ds, TrainConfig(epochs=3), "runs/x", collate_fn=collate,
                     evaluate=val_fn).fit()

Generic by construction: nothing here imports a model, task or objective module.
"""

from medmm.train.checkpoint import load_checkpoint, load_model_weights, save_checkpoint, seed_everything
from medmm.train.device import model_device, to_device
from medmm.train.distributed import cleanup, distributed_session, is_main_process, setup_distributed, world_size
from medmm.train.loop import EpochSampler, FitResult, TrainConfig, Trainer, build_optimizer, fit

__all__ = [
    "Trainer", "TrainConfig", "FitResult", "EpochSampler", "fit", "build_optimizer",
    "save_checkpoint", "load_checkpoint", "load_model_weights", "seed_everything",
    "setup_distributed", "cleanup", "distributed_session", "is_main_process", "world_size",
    "to_device", "model_device",
]
