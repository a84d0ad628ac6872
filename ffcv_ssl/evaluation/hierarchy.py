"""Label hierarchies: map fine predictions up to coarser levels and score top-1 per level.

Cole et al. (2022, §4.4, Fig 5) train at the finest label and report accuracy after mapping predictions
and targets up the hierarchy: iNat21's seven taxonomic levels (kingdom ... species), Places365's three
levels, ImageNet's WordNet depth. Three sources, one structure (``Hierarchy``):

- a beton (or feature-cache) manifest: ``label_levels[level]["of_label"]`` is the parent of every fine
  label at that level (written by ``dataset_writers``); several manifests (train + val) are merged;
- a user file of ``parent,child`` lines (Places365's scene hierarchy, or any tree); levels are depths;
- the ImageNet devkit's ``meta.mat`` (``synsets`` with ``children`` lists, root ``entity``); WordNet is a
  DAG there (a few synsets have two hypernyms), so we keep the breadth-first tree from the root: each
  synset keeps the first parent met on a shortest path, which is deterministic and documented in
  ``Hierarchy.source``.

Depth levels of unbalanced trees (WordNet) clamp at the leaf: a class shallower than depth d is its own
ancestor at depth d. Levels with one class (the root) or with every class apart (the fine level again)
carry no information and are dropped.
"""
from __future__ import annotations

import csv
import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ffcv_ssl.errors import UserError
from ffcv_ssl.files import read_json

if TYPE_CHECKING:
    from dataset_writers.manifest import LabelLevel, Manifest


class HierarchyError(UserError):
    """A hierarchy that is inconsistent, incomplete, or lacks the level asked for."""


class Hierarchy:
    """Ancestors of every fine label at each coarser level.

    Attributes:
        fine_names: names of the fine labels, in label order.
        levels: the coarser levels, ordered coarse to fine (the fine level itself is ``fine_level``).
        ancestor: level -> ``(num_fine,)`` int64, the ancestor's index at that level (-1: unknown).
        names: level -> names of that level's classes.
        fine_level: name reported for the fine level in ``top1_per_level``.
        source: where the hierarchy came from, in words (goes into results).
    """

    def __init__(self, fine_names: Sequence[str], levels: Sequence[str], ancestor: Mapping[str, np.ndarray],
                 names: Mapping[str, Sequence[str]], fine_level: str = "label", source: str = ""):
        self.fine_names = [str(n) for n in fine_names]
        self.levels = [str(lv) for lv in levels]
        self.ancestor = {lv: np.asarray(ancestor[lv], dtype=np.int64) for lv in self.levels}
        self.names = {lv: [str(n) for n in names[lv]] for lv in self.levels}
        self.fine_level, self.source = fine_level, source
        self._validate()

    # --- checks ---------------------------------------------------------------------------------
    def _validate(self) -> None:
        where = self.source or "hierarchy"
        n = len(self.fine_names)
        if self.fine_level in self.levels:
            raise HierarchyError(f"{where}: level name {self.fine_level!r} is also the fine level's name")
        for lv in self.levels:
            anc = self.ancestor[lv]
            if anc.shape != (n,):
                raise HierarchyError(f"{where}: level {lv!r} gives parents for {anc.size} labels, there are {n}")
            if anc.size and (anc.min() < -1 or anc.max() >= len(self.names[lv])):
                raise HierarchyError(f"{where}: level {lv!r} points outside its {len(self.names[lv])} names")
        for coarse, fine in zip(self.levels, self.levels[1:]):
            a, b = self.ancestor[coarse], self.ancestor[fine]
            known = (a >= 0) & (b >= 0)
            pairs = np.unique(np.stack([b[known], a[known]], axis=1), axis=0)
            if len(pairs) and len(np.unique(pairs[:, 0])) < len(pairs):
                node = pairs[:-1, 0][np.diff(pairs[:, 0]) == 0][0]
                parents = pairs[pairs[:, 0] == node, 1]
                raise HierarchyError(
                    f"{where}: {fine} {self.names[fine][node]!r} has two parents at level {coarse} "
                    f"({self.names[coarse][parents[0]]!r} and {self.names[coarse][parents[1]]!r}); "
                    "give each node one parent")

    def require(self, levels: Sequence[str]) -> "Hierarchy":
        """The same hierarchy restricted to ``levels`` (kept in coarse-to-fine order); unknown ones are errors."""
        missing = [lv for lv in levels if lv not in self.levels and lv != self.fine_level]
        if missing:
            raise HierarchyError(f"{self.source or 'hierarchy'}: no label level {missing[0]!r} "
                                 f"(levels: {', '.join(self.levels) or 'none'})")
        keep = [lv for lv in self.levels if lv in levels]
        return Hierarchy(self.fine_names, keep, self.ancestor, self.names, self.fine_level, self.source)

    # --- use ------------------------------------------------------------------------------------
    @property
    def all_levels(self) -> List[str]:
        """Every level, coarse to fine, ending with the fine level."""
        return [*self.levels, self.fine_level]

    def num_classes(self, level: str) -> int:
        return len(self.fine_names) if level == self.fine_level else len(self.require([level]).names[level])

    def map_up(self, labels: np.ndarray, level: str) -> np.ndarray:
        """Fine labels (predictions or targets) -> class indices at ``level`` (-1 where the parent is unknown)."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.fine_names)):
            raise HierarchyError(f"{self.source or 'hierarchy'}: labels span [{labels.min()}, {labels.max()}] "
                                 f"but the hierarchy has {len(self.fine_names)} fine classes")
        if level == self.fine_level:
            return labels.copy()
        self.require([level])
        return self.ancestor[level][labels]

    def top1_per_level(self, predictions: np.ndarray, targets: np.ndarray) -> Dict[str, float]:
        """Top-1 accuracy at every level, ordered coarse to fine (the last entry is the fine level)."""
        predictions, targets = np.asarray(predictions), np.asarray(targets)
        if predictions.shape != targets.shape or predictions.ndim != 1:
            raise HierarchyError(f"top-1 per level needs 1-D predictions and targets of one length, got "
                                 f"{list(predictions.shape)} and {list(targets.shape)}")
        out: Dict[str, float] = {}
        for level in self.all_levels:
            t = self.map_up(targets, level)
            if (t < 0).any():
                name = self.fine_names[int(targets[np.flatnonzero(t < 0)[0]])]
                raise HierarchyError(f"{self.source or 'hierarchy'}: class {name!r} has no parent at level {level}; "
                                     "the hierarchy must cover every evaluated class")
            out[level] = float((self.map_up(predictions, level) == t).mean()) if len(t) else 0.0
        return out

    def describe(self) -> Dict[str, Any]:
        """Levels and class counts (for ``Results.extra``)."""
        return {"source": self.source, "levels": {lv: len(self.names[lv]) for lv in self.levels},
                "fine_level": self.fine_level, "fine_classes": len(self.fine_names)}

    # --- sources ----------------------------------------------------------------------------------
    @classmethod
    def from_manifest(cls, *manifests: Union["Manifest", Mapping[str, Any], os.PathLike, str],
                      levels: Optional[Sequence[str]] = None, fine_level: str = "label") -> "Hierarchy":
        """From beton manifests (``Manifest``s or ``.beton`` paths) or feature-cache manifests (dicts, or
        ``.manifest.json`` paths of either).

        Several manifests (e.g. the train and val betons) are merged: a class unseen in one split gets its
        parent from the other; different parents for one class are an error.
        """
        if not manifests:
            raise HierarchyError("Hierarchy.from_manifest needs at least one manifest")
        loaded = [_load_manifest(m) for m in manifests]
        where = " + ".join(w for w, _, _ in loaded)
        fine_names, first = loaded[0][1], loaded[0][2]
        if not fine_names:
            raise HierarchyError(f"{loaded[0][0]}: the manifest has no class_names; use the beton's manifest")
        for w, class_names, _ in loaded[1:]:
            if class_names != fine_names:
                raise HierarchyError(f"{w}: its class_names differ from {loaded[0][0]}'s; hierarchies of different "
                                     "label sets cannot be merged")
        available = list(first)
        asked = list(available if levels is None else levels)
        for lv in asked:
            if lv not in available:
                raise HierarchyError(f"{loaded[0][0]}: no label level {lv!r} (label_levels: "
                                     f"{', '.join(available) or 'none'}); write the beton with a reader that records "
                                     "it, or give a hierarchy file")
        ancestor: Dict[str, np.ndarray] = {}
        names: Dict[str, List[str]] = {}
        for lv in [lv for lv in available if lv in asked]:
            names[lv] = [str(n) for n in first[lv].names]
            merged = np.full(len(fine_names), -1, dtype=np.int64)
            for w, _, label_levels in loaded:
                spec = label_levels.get(lv)
                if spec is None:
                    raise HierarchyError(f"{w}: no label level {lv!r}; all merged manifests need the same levels")
                if [str(n) for n in spec.names] != names[lv]:
                    raise HierarchyError(f"{w}: the names of level {lv!r} differ from {loaded[0][0]}'s")
                parent = np.asarray(spec.of_label, dtype=np.int64)
                if parent.shape != merged.shape:
                    raise HierarchyError(f"{w}: level {lv!r} of_label has {parent.size} entries for "
                                         f"{len(fine_names)} classes")
                clash = (merged >= 0) & (parent >= 0) & (merged != parent)
                if clash.any():
                    i = int(np.flatnonzero(clash)[0])
                    raise HierarchyError(f"{where}: label {fine_names[i]!r} has two parents at level {lv} "
                                         f"({names[lv][merged[i]]!r} and {names[lv][parent[i]]!r})")
                merged = np.where(merged >= 0, merged, parent)
            if lv == fine_level:   # e.g. iNat21's "species" level, the fine label itself
                known = merged[merged >= 0]
                if len(np.unique(known)) != len(known):
                    raise HierarchyError(f"{where}: level {lv!r} has the fine level's name but merges classes; "
                                         "pick another fine_level name")
                continue
            ancestor[lv] = merged
        return cls(fine_names, list(ancestor), ancestor, {lv: names[lv] for lv in ancestor}, fine_level, source=where)

    @classmethod
    def from_parent_file(cls, path: os.PathLike | str, fine_names: Sequence[str],
                         fine_level: str = "label") -> "Hierarchy":
        """From a CSV of ``parent,child`` lines (optional header ``parent,child``; ``#`` comments).

        Every class of ``fine_names`` must be a leaf; every leaf must be a class; each name has one parent.
        Levels are depths from the roots (``depth_0`` = the roots), clamped at the leaves.
        """
        path = Path(path)
        if not path.is_file():
            raise HierarchyError(f"{path}: no such hierarchy file")
        parent_of: Dict[str, str] = {}
        line_of: Dict[str, int] = {}
        with open(path, newline="") as fp:
            for lineno, row in enumerate(csv.reader(fp), 1):
                cells = [c.strip() for c in row]
                if not any(cells) or cells[0].startswith("#"):
                    continue
                if [c.lower() for c in cells] == ["parent", "child"]:
                    continue
                if len(cells) != 2 or not all(cells):
                    raise HierarchyError(f"{path}:{lineno}: expected 'parent,child', got {','.join(row)!r}")
                parent, child = cells
                if parent == child:
                    raise HierarchyError(f"{path}:{lineno}: {child!r} is its own parent")
                if child in parent_of and parent_of[child] != parent:
                    raise HierarchyError(f"{path}:{lineno}: {child!r} has two parents ({parent_of[child]!r} on line "
                                         f"{line_of[child]} and {parent!r}); give each name one parent")
                parent_of[child] = parent
                line_of.setdefault(child, lineno)
        has_children = set(parent_of.values())
        fine_set = set(map(str, fine_names))
        for child, lineno in line_of.items():
            if child not in has_children and child not in fine_set:
                raise HierarchyError(f"{path}:{lineno}: leaf {child!r} is not a class of the dataset; fix the name "
                                     "or remove the line")
        paths = []
        for name in map(str, fine_names):
            if name in has_children:
                raise HierarchyError(f"{path}: class {name!r} has children; classes must be leaves")
            if name not in parent_of:
                raise HierarchyError(f"{path}: class {name!r} has no parent line; every class needs one")
            chain, seen = [name], {name}
            while chain[-1] in parent_of:
                up = parent_of[chain[-1]]
                if up in seen:
                    raise HierarchyError(f"{path}: the parents of {name!r} form a cycle through {up!r}")
                chain.append(up)
                seen.add(up)
            paths.append(chain[::-1])
        return cls._from_paths(fine_names, paths, fine_level, source=str(path))

    @classmethod
    def from_imagenet_meta(cls, path: os.PathLike | str, wnids: Optional[Sequence[str]] = None,
                           fine_level: str = "label") -> "Hierarchy":
        """From the ILSVRC2012 devkit's ``data/meta.mat`` (WordNet depth levels).

        Args:
            wnids: the dataset's classes in label order (the beton's ``class_names``); default: the leaf
                synsets (``num_children == 0``) in sorted-WNID order, the torchvision / ImageFolder order.
        """
        import scipy.io

        path = Path(path)
        if not path.is_file():
            raise HierarchyError(f"{path}: no such file (the devkit's ILSVRC2012_devkit_t12/data/meta.mat)")
        try:
            mat = scipy.io.loadmat(str(path), squeeze_me=True)
        except (ValueError, OSError, TypeError) as exc:
            raise HierarchyError(f"{path}: not a readable MATLAB file ({exc})") from None
        synsets = mat.get("synsets")
        needed = ("ILSVRC2012_ID", "WNID", "num_children", "children")
        if synsets is None or synsets.dtype.names is None or not set(needed) <= set(synsets.dtype.names):
            raise HierarchyError(f"{path}: no 'synsets' struct with fields {', '.join(needed)}; is it the ILSVRC2012 "
                                 "devkit's meta.mat?")
        synsets = np.atleast_1d(synsets)
        ids = [int(v) for v in synsets["ILSVRC2012_ID"]]
        wnid_of = {i: str(w) for i, w in zip(ids, synsets["WNID"])}
        children = {i: [int(c) for c in np.atleast_1d(np.asarray(ch, dtype=np.float64)).ravel()]
                    for i, ch in zip(ids, synsets["children"])}
        for i, n in zip(ids, synsets["num_children"]):
            if int(n) != len(children[i]):
                raise HierarchyError(f"{path}: synset {wnid_of[i]} says num_children={int(n)} but lists "
                                     f"{len(children[i])} children")
            unknown = [c for c in children[i] if c not in wnid_of]
            if unknown:
                raise HierarchyError(f"{path}: synset {wnid_of[i]} lists unknown child id {unknown[0]}")
        has_parent = {c for cs in children.values() for c in cs}
        roots = [i for i in ids if i not in has_parent]
        if len(roots) != 1:
            raise HierarchyError(f"{path}: expected one root synset (entity), found {len(roots)}")
        parent = {roots[0]: 0}
        queue = deque([roots[0]])
        while queue:              # breadth first: the first parent met lies on a shortest path from the root
            node = queue.popleft()
            for c in children[node]:
                if c not in parent:
                    parent[c] = node
                    queue.append(c)
        n_parents: Dict[int, int] = {}
        for cs in children.values():
            for c in cs:
                n_parents[c] = n_parents.get(c, 0) + 1
        several = sum(1 for v in n_parents.values() if v > 1)
        leaves = {wnid_of[i]: i for i in ids if not children[i]}
        fine = sorted(leaves) if wnids is None else [str(w) for w in wnids]
        paths = []
        for w in fine:
            if w not in leaves:
                what = "not a leaf synset" if w in wnid_of.values() else "unknown"
                raise HierarchyError(f"{path}: class {w!r} is {what} in meta.mat; classes must be ILSVRC2012 leaf "
                                     "WNIDs")
            node, chain = leaves[w], []
            if node not in parent:
                raise HierarchyError(f"{path}: synset {w} is not reachable from the root {wnid_of[roots[0]]}")
            while node:
                chain.append(wnid_of[node])
                node = parent[node]
            paths.append(chain[::-1])
        source = (f"{path} (WordNet breadth-first tree from {wnid_of[roots[0]]}; {several} synset(s) with several "
                  "parents keep the first on a shortest path)")
        return cls._from_paths(fine, paths, fine_level, source=source)

    @classmethod
    def _from_paths(cls, fine_names: Sequence[str], paths: Sequence[Sequence[str]], fine_level: str,
                    source: str) -> "Hierarchy":
        """Depth levels from root-to-leaf paths, clamped at the leaf; uninformative levels dropped."""
        levels, ancestor, names = [], {}, {}
        for depth in range(max((len(p) for p in paths), default=0)):
            nodes = [p[min(depth, len(p) - 1)] for p in paths]
            uniq = sorted(set(nodes))
            if len(uniq) <= 1 or nodes == [str(f) for f in fine_names]:   # the root alone, or the classes again
                continue
            index = {name: k for k, name in enumerate(uniq)}
            lv = f"depth_{depth}"
            levels.append(lv)
            ancestor[lv] = np.array([index[x] for x in nodes], dtype=np.int64)
            names[lv] = uniq
        return cls(fine_names, levels, ancestor, names, fine_level, source)

    def __repr__(self) -> str:
        counts = ", ".join(f"{lv}={len(self.names[lv])}" for lv in self.levels)
        return f"Hierarchy({counts}, {self.fine_level}={len(self.fine_names)})"


def _load_manifest(manifest: Union["Manifest", Mapping[str, Any], os.PathLike, str]
                   ) -> Tuple[str, List[str], Dict[str, "LabelLevel"]]:
    """(name for messages, fine class names, label levels) of a beton or feature-cache manifest."""
    from dataset_writers.manifest import LabelLevel, Manifest, read_manifest

    if isinstance(manifest, Manifest):
        return manifest.dataset, [str(n) for n in manifest.class_names], manifest.label_levels
    if isinstance(manifest, Mapping):       # a feature cache's manifest: the beton's class names and levels, copied
        levels = {lv: LabelLevel(list(spec.get("names", [])), list(spec.get("counts", [])),
                                 list(spec.get("of_label", [])))
                  for lv, spec in (manifest.get("label_levels") or {}).items()}
        return str(manifest.get("dataset", "manifest")), [str(n) for n in manifest.get("class_names") or []], levels
    path = Path(manifest)
    if path.suffix == ".beton":
        m = read_manifest(path)
        return str(path), [str(n) for n in m.class_names], m.label_levels
    if not path.is_file():
        raise HierarchyError(f"{path}: no such manifest")
    data = read_json(path, HierarchyError)
    return (str(path),) + _load_manifest(data)[1:]
