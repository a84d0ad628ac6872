"""Run metrics: JSON lines (always) and TensorBoard events (when the package is installed)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Optional


class MetricsLog:
    """Append-only ``metrics.jsonl``; one line per logging step, flushed so a killed run keeps its history."""

    def __init__(self, out_dir: Path, tensorboard: bool = True, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self._fp = open(self.path, "a") if enabled else None
        self._tb: Optional[Any] = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(out_dir) / "tensorboard"))
            except Exception:  # noqa: BLE001 - tensorboard is optional
                self._tb = None

    def log(self, step: int, values: Dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "time": round(time.time(), 3), **{k: _num(v) for k, v in values.items()}}
        self._fp.write(json.dumps(row) + "\n")
        self._fp.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()
        if self._tb is not None:
            self._tb.close()


def _num(v: Any) -> Any:
    try:
        return round(float(v), 6)
    except (TypeError, ValueError):
        return v
