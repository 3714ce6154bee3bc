"""Training: the arguments of both stages, the objectives (what differs between them), the one
`Trainer`, the stages as library calls, metrics logging, FSDP support and graceful stops."""
