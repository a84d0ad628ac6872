"""``ffcv-ssl rehearse``: the study's sweep files, unchanged, at rehearsal scale on fixture datasets.

``photos`` (real photographs), ``fixtures`` (the four official layouts at >= 100 classes), ``profile`` (the
documented scale-down applied on top of a sweep through the sweep machinery's hook), ``run`` (run the sweeps,
report each, one summary table).
"""
