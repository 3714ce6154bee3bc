"""genie: Genie-style spatiotemporal world models on tokenized video (library; no command-line code).

Grouped by concept into subpackages (model/, masking/, data/, training/, checkpointing/,
evaluation/, export/, studies/) and a few leaf modules; docs/architecture.md holds the one layout map.
Re-exported here: the names most users need.
"""
from genie.data import RawTokenDataset
from genie.decoding import SamplingConfig, generate
from genie.errors import ConfigError, UserError
from genie.masking.collators import get_masked_pretrain_collator, get_maskgit_collator
from genie.model import GenieConfig, STMaskGIT
from genie.protocols import MaskGITModel
from genie.training.arguments import TrainingArguments
from genie.training.masked_pretrain_config import MaskedPretrainConfig
from genie.training.stages import HandOffArguments, run_autoregressive, run_masked_pretrain
from genie.training.trainer import Trainer, run_training

__all__ = ["ConfigError", "GenieConfig", "HandOffArguments", "MaskGITModel", "MaskedPretrainConfig", "RawTokenDataset",
           "STMaskGIT", "SamplingConfig", "Trainer", "TrainingArguments", "UserError", "generate",
           "get_masked_pretrain_collator", "get_maskgit_collator", "run_autoregressive", "run_masked_pretrain",
           "run_training"]
