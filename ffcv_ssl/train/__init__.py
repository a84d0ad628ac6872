"""Pretraining: the typed run config, the engine (resumable loop, AMP, DDP) and its metrics."""
