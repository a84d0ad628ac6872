"""``WriteConfig``: everything one write needs (a dataset split or a pool), and ``run_write`` that performs it.

The command line (``ffcv-ssl write``) and sweep jobs both build a ``WriteConfig`` and call ``run_write``, so a
sweep's write stage runs the library directly, with the same checks, messages and SIGTERM handling as the CLI.
"""
from __future__ import annotations

import contextlib
import re
import signal
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ffcv_ssl.errors import UserError

#: Field -> its ``ffcv-ssl write`` flag, for messages that must name what the user typed.
_FLAGS: Dict[str, str] = {"root": "--root", "split": "--split", "subset": "--subset", "corrupt": "--corrupt",
                          "parts": "--part", "verify_parts": "--verify-parts"}


@dataclass
class WriteConfig:
    """One ``ffcv-ssl write`` invocation as values (defaults: the CLI's).

    Attributes:
        dataset: a registered reader (imagenet, inat21, places365, glc20, digits) or ``pool``.
        out: output FILE.beton; its manifest is written beside it.
        root: folder holding the extracted official dataset (datasets only).
        split: train, val, ... (datasets only; required there).
        options: reader options as ``KEY=VALUE`` strings (datasets only).
        max_resolution, write_mode, jpeg_quality: storage (``dataset_writers.write.ImageOptions``).
        subset: keep the nested subset of this many samples (datasets only; pools use ``PATH:N`` parts).
        seed, balanced: the nested-subset rule (also for a pool's ``PATH:N`` parts).
        corrupt: ``NAME[:k=v,...]`` corruptions or presets, applied in order (datasets only).
        corrupt_seed: seed of the corruption noise (None: ``seed``).
        workers: encoding processes (0: one per CPU of the affinity mask).
        on_error: ``fail`` or ``skip`` unreadable entries (listed in the manifest).
        overwrite: replace an existing ``out``.
        parts: the pool's betons, ``PATH`` or ``PATH:N``, in pool order (pool only).
        verify_parts: recompute each part's sha256 before pooling (pool only).
    """

    dataset: str
    out: str
    root: Optional[str] = None
    split: Optional[str] = None
    options: List[str] = field(default_factory=list)
    max_resolution: int = 512
    write_mode: str = "jpg"
    jpeg_quality: int = 90
    subset: Optional[int] = None
    seed: int = 0
    balanced: bool = False
    corrupt: List[str] = field(default_factory=list)
    corrupt_seed: Optional[int] = None
    workers: int = 0
    on_error: str = "fail"
    overwrite: bool = False
    parts: List[str] = field(default_factory=list)
    verify_parts: bool = False

    @property
    def is_pool(self) -> bool:
        return self.dataset == "pool"

    def _reject(self, names: List[str], why: str) -> None:
        given = [_FLAGS[n] for n in names if getattr(self, n) not in (None, [], False)]
        if given:
            raise UserError(f"{', '.join(given)} {why}")

    def validate(self) -> None:
        """The checks that need no file: flags of the other mode, a pool without parts, a dataset without split."""
        if self.is_pool:
            self._reject(["root", "split", "subset", "corrupt"], "cannot be used with 'write pool'; use --part "
                         "FILE:N for subsets (corrupt the parts when writing them)")
            if self.options:
                raise UserError(f"'write pool' takes no reader options (got {' '.join(self.options)})")
            if not self.parts:
                raise UserError("'write pool' needs at least one --part FILE[:N]")
        else:
            self._reject(["parts", "verify_parts"], "only apply to 'write pool'")
            if not self.split:
                raise UserError(f"--split is required for 'write {self.dataset}'")

    def inputs(self) -> Tuple[str, ...]:
        """What the write reads: the pool's betons (without ``:N``) and the dataset root."""
        parts = [re.sub(r":[0-9]+[kKmM]?$", "", p) for p in self.parts]
        return tuple(parts + ([self.root] if self.root else []))

    def outputs(self) -> Tuple[str, ...]:
        """What the write produces (its manifest goes beside it)."""
        return (str(self.out),)


class Terminated(UserError):
    """SIGTERM (what SLURM sends on preemption or scancel) during a write: cleaned up, exit 128 + 15."""

    exit_code = 128 + 15


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Handle SIGTERM like Ctrl-C: stop the write where it is, remove the temporary, stop the workers.

    Python's default for SIGTERM is to die on the spot, which leaves the temporary beton (as large as
    the beton) behind. The handler raises in the main thread, so the writer's own cleanup runs; a second
    SIGTERM during that cleanup is ignored (SLURM follows up with SIGKILL after its grace period).
    """
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated("terminated by SIGTERM (a SLURM preemption or scancel?) while writing; nothing was "
                         "written under --out and the temporary file was removed; rerun the same command")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:              # not the main thread (an embedding program): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_write(cfg: WriteConfig) -> Any:
    """Validate ``cfg`` and write the beton (+ manifest); returns the manifest.

    SIGTERM during the write raises ``Terminated`` after cleaning up, for the CLI and sweep jobs alike.
    """
    with _sigterm_as_interrupt():
        cfg.validate()
        if cfg.is_pool:
            from .pool import write_pool

            return write_pool(cfg.parts, cfg.out, seed=cfg.seed, balanced=cfg.balanced, overwrite=cfg.overwrite,
                              verify_parts=cfg.verify_parts)
        from .write import ImageOptions, write_dataset

        image = ImageOptions(max_resolution=cfg.max_resolution, write_mode=cfg.write_mode,
                             jpeg_quality=cfg.jpeg_quality)
        return write_dataset(cfg.dataset, cfg.root, cfg.split, cfg.out, options=cfg.options, image=image,
                             subset=cfg.subset, seed=cfg.seed, balanced=cfg.balanced, workers=cfg.workers or None,
                             on_error=cfg.on_error, overwrite=cfg.overwrite, corruptions=cfg.corrupt,
                             corrupt_seed=cfg.corrupt_seed)
