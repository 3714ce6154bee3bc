"""The model: its config, the factorized vocabulary, attention with a KV cache, the ST transformer and
`STMaskGIT` (logits, cached logits, loss, Hugging Face format)."""
from genie.model.config import GenieConfig
from genie.model.stmaskgit import STMaskGIT, token_cross_entropy

__all__ = ["GenieConfig", "STMaskGIT", "token_cross_entropy"]
