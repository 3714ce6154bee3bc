"""Data: readers of token folders (1X v1.1 and v2.0 behind one interface), their window index, the
built-in world; tokenizers.py (frames <-> tokens, one interface) and atari.py (recorded Atari games;
needs the atari extra) are imported from their modules.

The collators live in `genie.masking.collators`; they are re-exported here only so that the
reference's `from data import RawTokenDataset, get_maskgit_collator, get_masked_pretrain_collator`
keeps working (code in genie/ imports them from their home)."""
from genie.data.cosmos_v2 import CosmosV2Dataset
from genie.data.raw_tokens import RawTokenDataset, window_start_indices, write_token_dataset
from genie.data.sources import (DataOptions, challenge_stride, open_dataset, open_eval_dataset, open_train_dataset,
                                resolve_data_dirs)
from genie.errors import DataFormatError
from genie.masking.collators import (AutoregressiveMaskGITCollator, MaskedPretrainCollator,
                                     get_masked_pretrain_collator, get_maskgit_collator)

__all__ = ["AutoregressiveMaskGITCollator", "CosmosV2Dataset", "DataFormatError", "DataOptions",
           "MaskedPretrainCollator", "RawTokenDataset", "challenge_stride", "get_masked_pretrain_collator",
           "get_maskgit_collator", "open_dataset", "open_eval_dataset", "open_train_dataset", "resolve_data_dirs",
           "window_start_indices", "write_token_dataset"]
