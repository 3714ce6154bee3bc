"""Data: readers of token folders (1X v1.1 and v2.0 behind one interface), their window index,
collators (one per masking strategy), the built-in world; tokenizers.py (frames <-> tokens, one interface)
and atari.py (recorded Atari games; needs the atari extra) are imported from their modules."""
from genie.data.collators import (AutoregressiveMaskGITCollator, MaskedPretrainCollator, apply_mask,
                                  get_masked_pretrain_collator, get_maskgit_collator, stack_features)
from genie.data.cosmos_v2 import CosmosV2Dataset
from genie.data.raw_tokens import KNOWN_ACTION_DIMS, RawTokenDataset, window_start_indices, write_token_dataset
from genie.data.sources import (DataOptions, challenge_stride, open_dataset, open_eval_dataset, open_train_dataset,
                                resolve_data_dirs)
from genie.errors import DataFormatError

__all__ = ["AutoregressiveMaskGITCollator", "CosmosV2Dataset", "DataFormatError", "DataOptions", "KNOWN_ACTION_DIMS",
           "MaskedPretrainCollator", "RawTokenDataset", "apply_mask", "challenge_stride",
           "get_masked_pretrain_collator", "get_maskgit_collator", "open_dataset", "open_eval_dataset",
           "open_train_dataset", "resolve_data_dirs", "stack_features", "window_start_indices", "write_token_dataset"]
