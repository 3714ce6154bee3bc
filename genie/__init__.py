"""genie: Genie-style spatiotemporal world models on tokenized video (library; no command-line code)."""
from genie.config import ConfigError, GenieConfig
from genie.decoding import SamplingConfig, generate
from genie.masked_pretrain_config import MaskedPretrainConfig
from genie.model import STMaskGIT

__all__ = ["ConfigError", "GenieConfig", "MaskedPretrainConfig", "STMaskGIT", "SamplingConfig", "generate"]
