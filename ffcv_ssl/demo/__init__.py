"""``ffcv-ssl demo``: the whole study in miniature on scikit-learn's digits, with the real components.

Write clean betons, a nested subset and the corrupted variants with the real writer; submit the demo
sweep (SimCLR and supervised pretraining, linear probes on label budgets, kNN, the two-level hierarchy,
a random-backbone baseline) through submitit (the local executor, or SLURM when a controller answers);
render the report. Needs no download; sized for a 2-core CPU (full run <= 15 min, --quick <= 3 min).
"""
from .run import CONDITIONS, DemoConfig, run_demo

__all__ = ["CONDITIONS", "DemoConfig", "run_demo"]
