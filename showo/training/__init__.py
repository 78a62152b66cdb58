"""Show-o training: LightningModule, strategies (DeepSpeed ZeRO on GPU and CPU), checkpoints, export."""

from showo.training.trainer import fit

__all__ = ["fit"]
