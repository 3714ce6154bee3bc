"""genie: Genie-style spatiotemporal world models on tokenized video (library; no command-line code).

Where each concept lives (docs/architecture.md has the full map):
  model/          config, factorized vocabulary, attention, ST transformer, STMaskGIT
  masking/        mask builders (True = masked), collators (one per masking strategy), mask-ratio
                  schedules, seeded generators
  data/           token folders (1X v1.1, v2.0), windows, the built-in world, tokenizers
                  (the Tokenizer interface), recorded Atari
  training/       arguments, objectives (the two stages), the Trainer, logging
  checkpointing/  checkpoint I/O, manifests, run folders, the run lock
  evaluation/     scores, the report, pictures
  decoding.py     the MaskGIT loop (PyTorch and ONNX Runtime)
  export/         ONNX export and the ONNX Runtime backend
  studies/        ablation studies
  protocols.py    the declared interfaces: MaskGITModel, TokenDataset
  errors.py       every user error (one line, exit 2)
  cli.py          argument parsing for the commands
  files.py        file helpers: JSON objects, atomic folders, SHA-256 (imports nothing from genie)
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
