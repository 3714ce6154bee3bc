"""The module users import data pieces from, as in the reference:
`from data import RawTokenDataset, get_maskgit_collator, get_masked_pretrain_collator`.
It re-exports `genie.data` (which re-exports the collators from `genie.masking.collators`) and defines
nothing."""
from genie.data import (AutoregressiveMaskGITCollator, CosmosV2Dataset, DataFormatError, DataOptions,  # noqa: F401
                        MaskedPretrainCollator, RawTokenDataset, challenge_stride, get_masked_pretrain_collator,
                        get_maskgit_collator, open_dataset, open_eval_dataset, open_train_dataset, resolve_data_dirs,
                        window_start_indices, write_token_dataset)
from genie.data import __all__  # noqa: F401
