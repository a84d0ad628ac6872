"""``ffcv-ssl write DATASET ...`` and ``ffcv-ssl write pool ...``: official layouts -> ``.beton`` + manifest."""
from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from typing import TYPE_CHECKING, Dict, Sequence

from ..errors import UserError
from . import register_command

if TYPE_CHECKING:
    from dataset_writers.config import WriteConfig

EXAMPLES = """examples:
  ffcv-ssl write imagenet --root /data/imagenet --split val --out data/imagenet_val.beton
  ffcv-ssl write inat21 --root /data/inat21 --split train --subset 500000 --seed 0 --out data/inat21_500k.beton
  ffcv-ssl write places365 --root /data/places365 --split train hierarchy=scene_hierarchy.csv --out data/p365.beton
  ffcv-ssl write glc20 --root /data/glc --split train label_rule=centre region=us --out data/glc20_us.beton
  ffcv-ssl write pool --part data/inat21_train.beton:250000 --part data/imagenet_train.beton:250000 \\
      --out data/pool_inat_in_500k.beton
Reader options (KEY=VALUE) are listed below; docs/datasets.md explains each layout and default."""


class _WriteParser(argparse.ArgumentParser):
    """The write parser: KEY=VALUE options may come anywhere, and --help lists every reader's options.

    argparse consumes positionals greedily, so ``write imagenet --root R val_layout=kaggle`` would leave
    ``val_layout=kaggle`` unparsed; intermixed parsing fixes that. The reader table is built only when
    help is printed, because importing the readers loads ffcv (seconds) and ``--help`` must stay fast.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def format_help(self) -> str:
        return super().format_help() + "\n" + reader_options_help()


def reader_options_help() -> str:
    """One block per registered reader: splits and options with their defaults (from the dataclasses)."""
    from dataset_writers.registry import load_readers

    lines = ["datasets and their reader options (KEY=VALUE, default shown):"]
    for name, spec in sorted(load_readers().items()):
        lines.append(f"  {name}: {spec.summary}; --split {'|'.join(spec.splits)}")
        docs = _attribute_docs(spec.options.__doc__ or "")
        for f in dataclasses.fields(spec.options):
            default = f.default if f.default is not dataclasses.MISSING else "(required)"
            lines.append(f"      {f.name}={default!s}" + (f"  {docs[f.name]}" if f.name in docs else ""))
    return "\n".join(lines) + "\n"


def _attribute_docs(doc: str) -> Dict[str, str]:
    """``name: text`` entries (with continuation lines) of a Google-style ``Attributes:`` section."""
    out: Dict[str, str] = {}
    current = None
    in_section = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped == "Attributes:":
            in_section = True
            continue
        if not in_section or not stripped:
            current = None if not stripped else current
            continue
        m = re.match(r"^(\w+):\s*(.*)$", stripped)
        if m and line.startswith(" " * 8) and not line.startswith(" " * 12):
            current = m.group(1)
            out[current] = m.group(2)
        elif current:
            out[current] += " " + stripped
    return {k: v.replace("``", "") for k, v in out.items()}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dataset_writers.config import WriteConfig

    d = WriteConfig(dataset="", out="")      # the defaults live in the config, once
    p.__class__ = type("WriteParser", (_WriteParser, type(p)), {})
    p.epilog = EXAMPLES
    p.add_argument("dataset", metavar="DATASET", help="imagenet, inat21, places365, glc20, digits; or 'pool'")
    p.add_argument("options", nargs="*", metavar="KEY=VALUE", help="reader options (listed below)")
    src = p.add_argument_group("what to write")
    src.add_argument("--root", help="folder holding the extracted official dataset (see docs/datasets.md)")
    src.add_argument("--split", help="train, val, ... (per dataset, listed below)")
    src.add_argument("--part", action="extend", nargs="+", default=[], metavar="FILE[:N]",
                     help="pool only: a beton written by 'ffcv-ssl write', optionally ':N' for its nested subset of "
                          "N samples (250000, 250k, 1M); repeat for each part, in pool order")
    src.add_argument("--out", required=True, help="output FILE.beton; its manifest is written beside it")
    store = p.add_argument_group("storage (defaults suit 224-px training; see ImageOptions)")
    store.add_argument("--max-resolution", type=int, default=d.max_resolution,
                       help=f"longer side cap in px (default {d.max_resolution}: ImageNet/iNat21 stay at their published <= 500 px, "
                            "so corruptions keep their factor against the clean beton; 384 or 256 for smaller, "
                            "faster betons; measured trade-off in docs/corruptions.md)")
    store.add_argument("--write-mode", default=d.write_mode, choices=("jpg", "raw", "smart"),
                       help="jpg (default; ~10x smaller than raw), raw (lossless, large), smart (raw when small)")
    store.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality,
                       help=f"JPEG quality (default {d.jpeg_quality}, as ffcv-imagenet; 95 if you study compression effects)")
    sub = p.add_argument_group("nested subsets (Cole et al. §3.1: 50k ... 1M)")
    sub.add_argument("--subset", type=int, help="keep N samples: a prefix of one seeded permutation, so "
                                                "50k ⊂ 125k ⊂ ... with the same --seed")
    sub.add_argument("--seed", type=int, default=d.seed, help=f"seed of the subset permutation (default {d.seed}; keep it fixed "
                                                         "across a study so subsets nest)")
    sub.add_argument("--balanced", action="store_true",
                     help="make every prefix as class-balanced as possible (default: uniform, as the paper)")
    cor = p.add_argument_group("corrupted variants (Cole et al. §4.3; docs/corruptions.md)")
    cor.add_argument("--corrupt", action="append", default=[], metavar="NAME[:k=v,...]",
                     help="corrupt every image before storing it, e.g. --corrupt jpeg:quality=10, --corrupt "
                          "downsample:size=256,factor=4 or a preset (paper_salt_pepper, paper_jpeg, paper_resize, "
                          "paper_downsample2x, paper_downsample4x); repeat to chain; label_noise:rate=0.2 flips labels")
    cor.add_argument("--corrupt-seed", type=int, help="seed of the corruption noise (default: --seed)")
    run = p.add_argument_group("run")
    run.add_argument("--workers", type=int, default=d.workers,
                     help=f"encoding processes (default {d.workers} = one per CPU of this process's affinity mask)")
    run.add_argument("--on-error", default=d.on_error, choices=("fail", "skip"),
                     help="fail (default): stop before writing anything final, naming the file; skip: leave "
                          "unreadable/missing/unlabelled entries out and list them in the manifest")
    run.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    run.add_argument("--verify-parts", action="store_true", help="pool only: recompute each part's sha256 first")


def write_config(args: argparse.Namespace) -> WriteConfig:
    """The parsed ``ffcv-ssl write`` arguments as a ``WriteConfig`` (the one place flags become config fields)."""
    from dataset_writers.config import WriteConfig

    return WriteConfig(dataset=args.dataset, out=args.out, root=args.root, split=args.split,
                       options=list(args.options), max_resolution=args.max_resolution, write_mode=args.write_mode,
                       jpeg_quality=args.jpeg_quality, subset=args.subset, seed=args.seed, balanced=args.balanced,
                       corrupt=list(args.corrupt), corrupt_seed=args.corrupt_seed, workers=args.workers,
                       on_error=args.on_error, overwrite=args.overwrite, parts=list(args.part),
                       verify_parts=args.verify_parts)


class _ArgvParser(argparse.ArgumentParser):
    """The write grammar outside the CLI: a usage mistake raises ``UserError`` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def parse_write_argv(argv: Sequence[str]) -> WriteConfig:
    """``ffcv-ssl write`` arguments (without ``write``) -> ``WriteConfig``: how sweep write stages are given.

    Uses this module's ``add_arguments``, so a sweep's write stage accepts exactly what the command line does;
    an unknown argument is an error here (before any job is submitted), as it is on the command line.
    """
    parser = _ArgvParser(prog=f"ffcv-ssl write {shlex.join(argv)}", add_help=False)
    add_arguments(parser)
    return write_config(parser.parse_args(list(argv)))


@register_command("write", help="write a dataset split, a nested subset or a pool to a .beton (+ manifest)",
                  description="Read an official dataset layout (or existing betons, for 'pool') and write a "
                              ".beton with a JSON manifest beside it. The file appears under --out only when "
                              "complete and verified.")
def run(args: argparse.Namespace) -> int:
    from dataset_writers.config import run_write

    from ..console import console

    manifest = run_write(write_config(args))
    skipped = len(manifest.skipped)
    console.print(f"wrote [bold]{args.out}[/]: {manifest.num_samples:,} samples, {manifest.num_classes} "
                  f"classes, {manifest.write.images_per_s:,.0f} img/s"
                  + (f", [yellow]{skipped} skipped (listed in the manifest)[/]" if skipped else "")
                  + f"; sha256 {manifest.sha256[:16]}…", soft_wrap=True)
    return 0
