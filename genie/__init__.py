"""genie: Genie-style spatiotemporal world models on tokenized video (library; no command-line code).

Layout and import rules: docs/architecture.md.
"""
from genie.config import ConfigError, GenieConfig
from genie.data import RawTokenDataset, get_masked_pretrain_collator, get_maskgit_collator
from genie.decoding import SamplingConfig, generate
from genie.masked_pretrain_config import MaskedPretrainConfig
from genie.model import STMaskGIT
from genie.protocols import MaskGITModel
from genie.stages import HandOffArguments, run_autoregressive, run_masked_pretrain
from genie.trainer import Trainer, run_training
from genie.training_args import TrainingArguments

__all__ = ["ConfigError", "GenieConfig", "HandOffArguments", "MaskGITModel", "MaskedPretrainConfig", "RawTokenDataset",
           "STMaskGIT", "SamplingConfig", "Trainer", "TrainingArguments", "generate", "get_masked_pretrain_collator",
           "get_maskgit_collator", "run_autoregressive", "run_masked_pretrain", "run_training"]
