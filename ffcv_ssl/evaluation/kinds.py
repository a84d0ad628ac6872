"""The one list of evaluation kinds and their registry, light enough for ``ffcv-ssl --help`` (no torch, no ffcv).

``runner.py`` registers one function per kind into ``EVALUATIONS``; declaring the kinds here lets the CLI help,
the eval config and sweep jobs name and check them without importing the runner.
"""
from __future__ import annotations

from ..errors import UserError
from ..registry import Registry

# kind -> what it does (``ffcv-ssl eval --help``)
KIND_HELP = {
    "linear": "cached features, L-BFGS probe",
    "knn": "k=20 cosine",
    "hierarchical": "probe at the finest level, top-1 per level",
    "concat": "two representations side by side",
    "finetune": "fine-tune the backbone on the budget",
    "scratch": "supervised from scratch on the budget",
    "reference_linear": "frozen backbone, augmented SGD: the slow reference",
}
EVALUATIONS: Registry = Registry("evaluation", package=__package__, error=UserError,
                                 builtins={kind: "runner" for kind in KIND_HELP})
KINDS = tuple(KIND_HELP)
#: Kinds whose results are filed under another kind's name: a concat evaluation is a linear probe on joined
#: features, written as ``linear`` results (with their ``concat_with`` sources), in ``linear-<budget>/``.
RESULT_KIND = {"concat": "linear"}
#: The kinds a ``results.json`` can record.
RESULT_KINDS = tuple(k for k in KINDS if k not in RESULT_KIND)
