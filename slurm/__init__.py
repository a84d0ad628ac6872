"""SLURM side of ffcv-ssl: sweep jobs submitted as submitit job arrays, and the single-node development cluster.

A package (not loose scripts) because submitit pickles job callables by reference and the compute node unpickles
them by import path: ``ffcv_ssl.slurm.<module>.<Class>`` must import on the node. The folder is ``slurm/`` in the
repository (the design's layout) and installs as ``ffcv_ssl.slurm`` (``package_dir`` in setup.py), so it cannot
collide with another distribution's top-level ``slurm`` module. ``slurm/cluster.sh`` brings up and stops a
real single-node cluster for development and tests; ``ffcv_ssl.slurm.cluster`` drives it from Python.
"""
