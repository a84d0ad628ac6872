"""GeoLifeCLEF 2020 as land-cover classification of RGB patches (layouts: ``docs/datasets.md``).

Two packagings exist and both are read:

* ``original`` (GLC20, AIcrowd 2020): ``occurrences_{fr,us}_{train,test}.csv`` (``id;lat;lon;species_id``)
  and per observation ``<patches>/<CD>/<AB>/<id>.npy`` (256x256x5: R, G, B, near-IR, land cover) plus
  ``<id>_alti.npy`` (altitude), where ``CD``/``AB`` are the last/previous two digits of the id.
* ``repackaged`` (GLC21 / LILA): ``observations/observations_{fr,us}_{train,test}.csv``
  (``observation_id;latitude;longitude;species_id;subset``, subset in train/val) and
  ``patches/{fr,us}/<CD>/<AB>/<id>_{rgb.jpg,near_ir.jpg,altitude.tif,landcover.tif}``.

Cole et al. used GLC20 as "land cover classification" on ~1.1M images without publishing the label
rule, so it is an option: the land-cover class of the centre pixel (default), the majority class of
the patch, or the observation's species. Land-cover labels need the land-cover raster of every patch,
so this reader (unlike the others) reads one small array per observation while indexing, in threads.
"""
from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ffcv_ssl.util import cpu_budget

from ..errors import ImageError, WriterError
from ..images import open_rgb
from ..records import ExtraField, SplitIndex
from ..registry import register_reader
from ._common import Problems, first_file, option_path, present, require_nonempty, require_root

LABEL_RULES = ("centre", "majority", "species")
REGIONS = {"fr": ("fr",), "us": ("us",), "both": ("fr", "us")}
PACKAGINGS = ("auto", "original", "repackaged")
PATCH = 256                      # GLC patches are 256 x 256 px (250 m x 250 m around the observation)
GLC20_LANDCOVER_CLASSES = 34     # size of the one-hot land-cover encoding in the GLC20 loader


@dataclass
class GLC20Options:
    """Reader options (``KEY=VALUE`` on the command line).

    Attributes:
        label_rule: ``centre`` (land-cover class of the centre pixel, default), ``majority`` (most frequent
            land-cover class of the patch; ties -> smallest code) or ``species`` (the observation's species_id).
        region: ``fr``, ``us`` or ``both``.
        packaging: ``original`` (.npy patches), ``repackaged`` (_rgb.jpg + .tif) or ``auto``.
        near_ir: also store the near-infrared band as a (256, 256) uint8 field ``near_ir``.
        altitude: also store the altitude raster as a (256, 256) int16 field ``altitude`` (metres).
        patches: folder holding the patches (default: searched under --root).
        label_workers: threads reading land-cover rasters while indexing (0: the CPUs available).
    """

    label_rule: str = "centre"
    region: str = "both"
    packaging: str = "auto"
    near_ir: bool = False
    altitude: bool = False
    patches: str = ""
    label_workers: int = 0

    def validate(self) -> None:
        if self.label_rule not in LABEL_RULES:
            raise WriterError(f"glc20 option label_rule={self.label_rule!r} is not one of {', '.join(LABEL_RULES)}")
        if self.region not in REGIONS:
            raise WriterError(f"glc20 option region={self.region!r} is not one of {', '.join(REGIONS)}")
        if self.packaging not in PACKAGINGS:
            raise WriterError(f"glc20 option packaging={self.packaging!r} is not one of {', '.join(PACKAGINGS)}")
        if self.label_workers < 0:
            raise WriterError(f"glc20 option label_workers={self.label_workers} must be >= 0")


def patch_dirs(obs_id: int) -> str:
    """``10561900`` -> ``00/19``: the last two digits, then the two before them."""
    s = str(obs_id)
    return f"{s[-2:]}/{s[-4:-2]}"


@dataclass
class GLC20Patches:
    """Pixels and extra rasters of GLC patches; ``bases[pos]`` is the patch path without its suffix."""

    bases: Sequence[str]
    packaging: str
    near_ir: bool = False
    altitude: bool = False

    def _npy(self, path: str) -> np.ndarray:
        try:
            arr = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise ImageError(path, "file not found") from None
        except (OSError, ValueError) as exc:
            raise ImageError(path, f"not a readable .npy patch ({exc})") from None
        return arr

    def load(self, pos: int, draft_max_side: Optional[int] = None) -> np.ndarray:
        base = self.bases[pos]
        if self.packaging == "repackaged":
            return open_rgb(base + "_rgb.jpg", exif_transpose=False)
        arr = self._npy(base + ".npy")
        if arr.ndim != 3 or arr.shape[2] < 5:
            raise ImageError(base + ".npy", f"expected an HxWx5 patch (R, G, B, NIR, land cover), got {arr.shape}")
        return _as_uint8(np.asarray(arr[..., :3]), base + ".npy")

    def load_extra(self, pos: int) -> Dict[str, np.ndarray]:
        base, out = self.bases[pos], {}
        if self.near_ir:
            if self.packaging == "repackaged":
                from PIL import Image

                path = base + "_near_ir.jpg"
                try:
                    with Image.open(path) as im:
                        nir = np.asarray(im.convert("L"))
                except (OSError, ValueError) as exc:
                    raise ImageError(path, f"cannot decode ({exc})") from None
            else:
                path = base + ".npy"
                nir = _as_uint8(np.asarray(self._npy(path)[..., 3]), path)
            out["near_ir"] = _check_patch(nir, path)
        if self.altitude:
            path = base + ("_altitude.tif" if self.packaging == "repackaged" else "_alti.npy")
            alt = _read_tif(path) if self.packaging == "repackaged" else np.asarray(self._npy(path))
            if alt.dtype.kind == "f":
                alt = np.rint(alt)
            out["altitude"] = _check_patch(np.clip(alt, -32768, 32767).astype(np.int16), path)
        return out

    def landcover(self, pos: int, rule: str) -> int:
        """The land-cover label of one patch under ``rule`` (centre pixel or majority class)."""
        base = self.bases[pos]
        if self.packaging == "repackaged":
            path = base + "_landcover.tif"
            lc = _read_tif(path)
        else:
            path = base + ".npy"
            arr = self._npy(path)
            if arr.ndim != 3 or arr.shape[2] < 5:
                raise ImageError(path, f"expected an HxWx5 patch (R, G, B, NIR, land cover), got {arr.shape}")
            if rule != "majority":   # one pixel: with mmap, only one page of the file is read
                return int(arr[arr.shape[0] // 2, arr.shape[1] // 2, 4])
            lc = arr[..., 4]
        lc = np.asarray(lc)
        if lc.ndim != 2:
            raise ImageError(path, f"expected a 2-D land-cover raster, got shape {lc.shape}")
        if rule == "majority":
            flat = lc.astype(np.int64).ravel()
            if flat.min() < 0:
                raise ImageError(path, "negative land-cover code")
            return int(np.argmax(np.bincount(flat)))   # argmax: ties go to the smallest code
        return int(lc[lc.shape[0] // 2, lc.shape[1] // 2])

    def describe(self, pos: int) -> str:
        return self.bases[pos] + ("_rgb.jpg" if self.packaging == "repackaged" else ".npy")


def _as_uint8(arr: np.ndarray, path: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind == "f":
        arr = np.rint(arr)
    if arr.min() < 0 or arr.max() > 255:
        raise ImageError(path, f"values outside 0..255 in a {arr.dtype} band")
    return np.ascontiguousarray(arr.astype(np.uint8))


def _check_patch(arr: np.ndarray, path: str) -> np.ndarray:
    if arr.shape != (PATCH, PATCH):
        raise ImageError(path, f"expected a {PATCH}x{PATCH} raster, got {arr.shape}")
    return np.ascontiguousarray(arr)


def _read_tif(path: str) -> np.ndarray:
    import tifffile

    try:
        return np.asarray(tifffile.imread(path))
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for corrupt files
        raise ImageError(path, f"cannot decode TIFF ({type(exc).__name__}: {exc})") from None


def _read_csv(path: Path) -> Tuple[List[str], List[List[str]]]:
    with open(path, newline="", encoding="utf-8-sig") as fp:
        rows = [r for r in csv.reader(fp, delimiter=";") if r]
    if not rows:
        raise WriterError(f"{path} is empty; re-extract it")
    return [h.strip() for h in rows[0]], rows[1:]


def _csv_dir(root: Path, packaging: str) -> Tuple[Path, str]:
    """Where the observation CSVs are, and the packaging they belong to."""
    layouts = {"repackaged": ([root / "observations", root], "observations"),
               "original": ([root, root / "occurrences"], "occurrences")}
    wanted = ("repackaged", "original") if packaging == "auto" else (packaging,)
    for kind in wanted:
        dirs, prefix = layouts[kind]
        for d in dirs:
            if d.is_dir() and any(d.glob(f"{prefix}_*_*.csv")):
                return d, kind
    looked = " or ".join(f"{layouts[k][1]}_<fr|us>_<train|test>.csv" for k in wanted)
    raise WriterError(f"--root {root}: no {looked} found (also looked in observations/); point --root at the "
                      "extracted GeoLifeCLEF folder" + ("" if packaging == "auto" else " or pass packaging=auto"))


def _patch_root(root: Path, region: str, kind: str, opts: GLC20Options, first_id: Optional[int]) -> Path:
    given = option_path(opts.patches, root)
    if kind == "repackaged":
        base = given or root / "patches"
        cands = [base / region, base]
        probe = "{}_rgb.jpg"
    else:
        cands = ([given / region, given] if given else []) + [root / f"patches_{region}", root / "patches" / region,
                                                              root / "patches", root]
        probe = "{}.npy"
    dirs = [c for c in cands if c.is_dir()]
    if first_id is not None:
        for d in dirs:
            if (d / patch_dirs(first_id) / probe.format(first_id)).is_file():
                return d
    if not dirs:
        raise WriterError(f"--root {root}: no patch folder for region {region} (looked in "
                          f"{', '.join(str(c) for c in cands)}); pass patches=DIR")
    return dirs[0]


def _class_table(root: Path, rule: str, csv_dir: Path, regions: Sequence[str], prefix: str) -> Tuple[List[str], str]:
    """Class names for the label rule, and where they came from."""
    meta = [root / "metadata", root]
    if rule == "species":
        path = first_file(d / n for d in meta for n in ("species_details.csv", "species_metadata.csv"))
        names: Dict[int, str] = {}
        if path is not None:
            header, rows = _read_csv(path)
            if "species_id" in header:
                name_col = next((i for i, h in enumerate(header) if "name" in h.lower()), header.index("species_id"))
                for r in rows:
                    if len(r) > name_col and r[header.index("species_id")].strip().isdigit():
                        names[int(r[header.index("species_id")])] = r[name_col].strip()
        if names:
            table = [f"species {k}" for k in range(max(names) + 1)]
            for k, v in names.items():
                table[k] = v
            return table, path.name  # type: ignore[union-attr]
        top = -1
        for region in regions:
            p = csv_dir / f"{prefix}_{region}_train.csv"
            if p.is_file():
                header, rows = _read_csv(p)
                if "species_id" in header:
                    col = header.index("species_id")
                    top = max([top] + [int(r[col]) for r in rows if len(r) > col and r[col].strip().isdigit()])
        return [f"species {k}" for k in range(top + 1)], "largest species_id in the train CSVs"
    path = first_file(d / "landcover_original_labels.csv" for d in meta)
    if path is not None:
        header, rows = _read_csv(path)
        if "landcover_code" in header:
            code, label = header.index("landcover_code"), (header.index("landcover_label")
                                                           if "landcover_label" in header else None)
            names = {int(r[code]): (r[label].strip() if label is not None and len(r) > label
                                    else f"landcover {r[code]}")
                     for r in rows if len(r) > code and r[code].strip().isdigit()}
            if names:
                table = [f"landcover {k}" for k in range(max(max(names) + 1, GLC20_LANDCOVER_CLASSES))]
                for k, v in names.items():
                    table[k] = v
                return table, path.name
    return [f"landcover {k}" for k in range(GLC20_LANDCOVER_CLASSES)], "GLC20 land-cover codes 0..33 (no legend found)"


def _landcover_labels(source: GLC20Patches, rule: str, workers: int) -> List[object]:
    """Label (int) or the ImageError of every patch, read in threads (file reads and zlib release the GIL)."""
    def chunk(start: int) -> List[object]:
        out: List[object] = []
        for pos in range(start, min(start + 1024, len(source.bases))):
            try:
                out.append(source.landcover(pos, rule))
            except ImageError as exc:
                out.append(exc)
        return out
    results: List[object] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:   # map keeps order; one future per 1024 patches
        for part in pool.map(chunk, range(0, len(source.bases), 1024)):
            results += part
    return results


@register_reader("glc20", splits=("train", "val", "test"), options=GLC20Options,
                 summary="GeoLifeCLEF 2020 patches as land-cover classification (1,833,272 train / 45,446 val)")
def read_glc20(root: Optional[Path], split: str, opts: GLC20Options) -> SplitIndex:
    """Index one split (train/val subset, or test) of GLC20 in either packaging."""
    root = require_root(root, "glc20", "the observation CSVs and the patches")
    csv_dir, kind = _csv_dir(root, opts.packaging)
    prefix = "observations" if kind == "repackaged" else "occurrences"
    regions = REGIONS[opts.region]
    if split == "test" and opts.label_rule == "species":
        raise WriterError("glc20: the test CSVs have no species_id; use label_rule=centre or majority for split=test")
    problems = Problems()
    bases: List[str] = []
    ids: List[int] = []
    species: List[int] = []
    seen: Dict[int, str] = {}
    for region in regions:
        path = csv_dir / f"{prefix}_{region}_{'test' if split == 'test' else 'train'}.csv"
        if not path.is_file():
            raise WriterError(f"{path} not found; extract it into {csv_dir} or choose region="
                              f"{'us' if region == 'fr' else 'fr'}")
        header, rows = _read_csv(path)
        id_col = next((header.index(c) for c in ("observation_id", "id") if c in header), None)
        if id_col is None:
            raise WriterError(f"{path}: no 'observation_id' or 'id' column (header: {';'.join(header)[:60]})")
        sp_col = header.index("species_id") if "species_id" in header else None
        if split != "test" and "subset" in header:
            sub_col = header.index("subset")
            rows = [r for r in rows if len(r) > sub_col and r[sub_col].strip() == split]
        elif split == "val":
            raise WriterError(f"{path} has no 'subset' column, so there is no val subset in this packaging; "
                              "use split=train or split=test")
        patches = _patch_root(root, region, kind, opts, int(rows[0][id_col]) if rows else None)
        for k, r in enumerate(rows, 2):
            try:
                obs = int(r[id_col])
            except (ValueError, IndexError):
                raise WriterError(f"{path}: row {k} has no integer observation id: {';'.join(r)[:60]!r}") from None
            if obs in seen:
                problems.add(f"{path} row {k}", f"duplicate observation id {obs} (also in {seen[obs]})")
                continue
            seen[obs] = path.name
            ids.append(obs)
            bases.append(str(patches / patch_dirs(obs) / str(obs)))
            species.append(int(r[sp_col]) if sp_col is not None and len(r) > sp_col and r[sp_col].strip() else -1)
    order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
    ids_arr = np.asarray(ids, dtype=np.int64)[order]
    bases = [bases[i] for i in order]
    species_arr = np.asarray(species, dtype=np.int64)[order]

    suffixes = ["_rgb.jpg", "_landcover.tif"] if kind == "repackaged" else [".npy"]
    if opts.near_ir and kind == "repackaged":
        suffixes.append("_near_ir.jpg")
    if opts.altitude:
        suffixes.append("_altitude.tif" if kind == "repackaged" else "_alti.npy")
    if opts.label_rule == "species" and kind == "repackaged":
        suffixes.remove("_landcover.tif")
    keep = np.ones(len(bases), dtype=bool)
    for suffix in suffixes:
        found = present(Path("/"), [b + suffix for b in bases])
        for i in np.flatnonzero(keep & ~found):
            problems.add(bases[i] + suffix, f"listed in the {prefix} CSV but not found")
        keep &= found

    class_names, class_source = _class_table(root, opts.label_rule, csv_dir, regions, prefix)
    source = GLC20Patches(bases, kind, opts.near_ir, opts.altitude)
    labels = np.full(len(bases), -1, dtype=np.int64)
    if opts.label_rule == "species":
        labels = species_arr
    else:
        todo = np.flatnonzero(keep)
        sub = GLC20Patches([bases[i] for i in todo], kind)
        results = _landcover_labels(sub, opts.label_rule, opts.label_workers or cpu_budget())
        for i, res in zip(todo, results):
            if isinstance(res, ImageError):
                problems.add(res.path, res.reason)
                keep[i] = False
            else:
                labels[i] = int(res)  # type: ignore[arg-type]
    for i in np.flatnonzero(keep & ((labels < 0) | (labels >= len(class_names)))):
        problems.add(source.describe(int(i)), f"unknown class {labels[i]} (outside the {len(class_names)} classes "
                                              f"of {class_source})")
        keep[i] = False
    require_nonempty(int(keep.sum()), "glc20", split, csv_dir, problems)
    extras = {}
    if opts.near_ir:
        extras["near_ir"] = ExtraField((PATCH, PATCH), "uint8", "near-infrared band of the patch")
    if opts.altitude:
        extras["altitude"] = ExtraField((PATCH, PATCH), "int16", "altitude in metres")
    return SplitIndex(
        dataset="glc20", split=split, ids=ids_arr[keep], labels=labels[keep], class_names=class_names,
        source=GLC20Patches([b for b, k in zip(bases, keep) if k], kind, opts.near_ir, opts.altitude),
        id_kind="GLC observation id", extras=extras,
        options={**asdict(opts), "packaging_used": kind, "classes_from": class_source,
                 "label_rule_detail": {"centre": f"land-cover code at pixel (H//2, W//2) = "
                                                 f"({PATCH // 2}, {PATCH // 2})",
                                       "majority": "most frequent land-cover code of the patch (ties: smallest)",
                                       "species": "species_id of the observation"}[opts.label_rule]},
        skipped=problems.items,
    )
