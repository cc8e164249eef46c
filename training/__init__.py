"""Model families and the shared trainer.

`from_pretrained(DIR)` rebuilds the inference network of any run directory or converted
checkpoint (an `nn.Module` in eval mode). Families live in subpackages (`pix2pix`, `spade`,
`semdisc`); what they share (configs, trainer, losses, checkpoints) lives in `core`.
"""

from .core.checkpoint import from_pretrained, save_pretrained

__all__ = ["from_pretrained", "save_pretrained"]
