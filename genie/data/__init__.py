"""Data: readers of token folders, their window index, collators (one per masking strategy), the built-in world."""
from genie.data.collators import (AutoregressiveMaskGITCollator, MaskedPretrainCollator, apply_mask,
                                  get_masked_pretrain_collator, get_maskgit_collator, stack_features)
from genie.data.raw_tokens import (KNOWN_ACTION_DIMS, DataFormatError, RawTokenDataset, window_start_indices,
                                   write_token_dataset)
from genie.data.sources import challenge_stride, open_eval_dataset, open_train_dataset, resolve_data_dirs

__all__ = ["AutoregressiveMaskGITCollator", "DataFormatError", "KNOWN_ACTION_DIMS", "MaskedPretrainCollator",
           "RawTokenDataset", "apply_mask", "challenge_stride", "get_masked_pretrain_collator", "get_maskgit_collator",
           "open_eval_dataset", "open_train_dataset", "resolve_data_dirs", "stack_features", "window_start_indices",
           "write_token_dataset"]
