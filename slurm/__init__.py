"""SLURM side of ffcv-ssl: sweep jobs submitted as submitit job arrays, and the single-node development cluster.

A package (not loose scripts) because submitit pickles job callables by reference and the compute node unpickles
them by import path: ``slurm.<module>.<Class>`` must import on the node. ``slurm/cluster.sh`` brings up and stops a
real single-node cluster for development and tests; ``slurm.cluster`` drives it from Python.
"""
