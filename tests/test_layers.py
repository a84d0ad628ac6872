"""Imports follow the data path: no module imports from a layer after its own.

The data path is: dataset readers -> subsets/corruptions -> beton -> views (ops, loading) -> objectives/models
-> train -> evaluation -> report -> sweeps/CLI. A few foundation modules (errors, console, config, files, ...)
sit below every layer. Every module of the three top-level packages is read with ``ast`` (so an import inside a
function counts too) and every import of another of our modules must point to the same layer or an earlier one.
There is no exceptions list: a new module must be given a layer here, or the test fails.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parents[1]

# Layer of each module, by longest matching prefix of its dotted name (slurm/ installs as ffcv_ssl.slurm).
LAYERS: List[tuple[str, List[str]]] = [
    ("foundation", ["ffcv_ssl", "ffcv_ssl._version", "ffcv_ssl.errors", "ffcv_ssl.console",
                    "ffcv_ssl.files", "ffcv_ssl.paths", "ffcv_ssl.config", "ffcv_ssl.runtime",
                    "ffcv_ssl.distributed", "ffcv_ssl.data", "ffcv_ssl.util", "ffcv_ssl.registry", "ffcv_ssl.splitmix",
                    "ffcv_ssl.ffcv_compat", "dataset_writers.errors"]),
    ("readers", ["dataset_writers.readers", "dataset_writers.registry", "dataset_writers.records",
                 "dataset_writers.images"]),
    ("subsets/corruptions", ["dataset_writers.subsets", "dataset_writers.corruptions", "dataset_writers.manifest"]),
    ("beton", ["dataset_writers", "dataset_writers.beton", "dataset_writers.beton_check", "dataset_writers.write",
               "dataset_writers.pool", "dataset_writers.output", "dataset_writers.inspect", "dataset_writers.config"]),
    ("views", ["ffcv_ssl.ops", "ffcv_ssl.loading"]),
    ("objectives/models", ["ffcv_ssl.objectives", "ffcv_ssl.models", "ffcv_ssl.small_resnets", "ffcv_ssl.optim",
                           "ffcv_ssl.checkpoint", "ffcv_ssl.backbones"]),
    ("train", ["ffcv_ssl.train"]),
    ("evaluation", ["ffcv_ssl.evaluation", "ffcv_ssl.results"]),
    ("report", ["ffcv_ssl.report"]),
    ("sweeps/CLI", ["ffcv_ssl.slurm", "ffcv_ssl.commands", "ffcv_ssl.cli", "ffcv_ssl.__main__", "ffcv_ssl.demo",
                    "ffcv_ssl.bench", "ffcv_ssl.rehearse"]),
]
ORDER = {name: i for i, (name, _) in enumerate(LAYERS)}
PREFIXES = {prefix: layer for layer, prefixes in LAYERS for prefix in prefixes}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "slurm":
        parts = ["ffcv_ssl"] + parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        layer = PREFIXES.get(".".join(parts[:i]))
        if layer is not None:
            return layer
    return None


def modules() -> Dict[str, Path]:
    return {module_name(p): p for top in ("ffcv_ssl", "dataset_writers", "slurm") for p in (REPO / top).rglob("*.py")
            if "__pycache__" not in p.parts}


def imported(name: str, path: Path, known: Set[str]) -> Set[str]:
    """Our modules that ``path`` imports (``from pkg import mod`` counts as importing ``pkg.mod`` if that exists)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            t = "ffcv_ssl." + t if t.split(".")[0] == "slurm" else t
            while t and t not in known:          # an attribute of a module -> the module
                t = t.rpartition(".")[0]
            if t:
                out.add(t)
    return out


def test_every_module_has_a_layer():
    missing = sorted(n for n in modules() if layer_of(n) is None)
    assert not missing, f"give these modules a layer in tests/test_layers.py: {missing}"


def test_imports_follow_the_data_path():
    mods = modules()
    known = set(mods)
    backwards = []
    for name, path in sorted(mods.items()):
        mine = layer_of(name)
        for dep in sorted(imported(name, path, known)):
            theirs = layer_of(dep)
            if mine is not None and theirs is not None and ORDER[theirs] > ORDER[mine]:
                backwards.append(f"{name} ({mine}) imports {dep} ({theirs})")
    assert not backwards, "imports that run back up the data path:\n" + "\n".join(backwards)


def test_the_checker_sees_a_backward_import(tmp_path):
    """The checker itself: a function-level import of a later layer is found."""
    src = tmp_path / "engine.py"
    src.write_text("def f():\n    from ffcv_ssl.evaluation.linear import linear_probe\n")
    known = {"ffcv_ssl.evaluation.linear", "ffcv_ssl.train.engine"}
    assert imported("ffcv_ssl.train.engine", src, known) == {"ffcv_ssl.evaluation.linear"}
    assert ORDER[layer_of("ffcv_ssl.evaluation.linear")] > ORDER[layer_of("ffcv_ssl.train.engine")]
