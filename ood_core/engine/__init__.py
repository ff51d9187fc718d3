"""The engine: one batched extraction pass per (model, dataset split) and the fingerprinted, atomic feature cache."""
