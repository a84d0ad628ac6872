#!/usr/bin/env bash
# GPU check on a fresh single-GPU Linux machine (>= 16 cores): install, GPU tests, loader and training
# benchmarks with all cores, one summary table. About 6-8 minutes. Usage: benchmarks/gpu_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
OUT="${1:-runs/gpu_check}"
mkdir -p "$OUT"
export FFCV_SSL_NO_PROGRESS=1
CORES="$(python3 -c 'import os; print(len(os.sched_getaffinity(0)))')"
t0=$(date +%s)
./run.sh install >/dev/null
PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

echo "== GPU tests (loader GPU path, bf16 ResNet-50 SimCLR step, DDP over NCCL)"
$PY -m pytest -m gpu tests/test_gpu.py -q -s -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"

echo "== bench loader ($CORES workers)"
$PY -m ffcv_ssl bench loader --quick --images 2048 --workers "$CORES" --batch-size 256 \
    --data-dir "$OUT/bench-data" --json "$OUT/bench_loader.json" | tee "$OUT/bench_loader.log"

BETON256="$(ls "$OUT"/bench-data/*/photos256.beton | head -1)"
BETON500="$(ls "$OUT"/bench-data/*/photos500.beton | head -1)"
for side in 256 500; do
  beton="BETON$side"
  echo "== bench train, ResNet-50 SimCLR 224 px bf16 channels_last, JPEGs stored at <= $side px"
  $PY -m ffcv_ssl bench train configs/pretrain/simclr_rn50.yaml "data.train=${!beton}" data.batch_size=256 \
      "data.num_workers=$CORES" model.sync_bn=false --steps 30 --warmup 10 --compile both \
      --json "$OUT/bench_train_$side.json" | tee "$OUT/bench_train_$side.log"
done

$PY - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
from rich.console import Console
from rich.table import Table
out = Path(sys.argv[1])
t = Table(title="ffcv-ssl GPU check")
t.add_column("measure"); t.add_column("value", justify="right"); t.add_column("target", justify="right")
for side in (256, 500):
    p = out / f"bench_train_{side}.json"
    if p.exists():
        for r in json.loads(p.read_text())["rows"]:
            tag = f"{side}px, compile {'on' if r['compile'] else 'off'}"
            t.add_row(f"(a) RN50 SimCLR step, views/s [{tag}]", f"{r['model_views_per_s']:,.0f}", ">= 5,000")
            t.add_row(f"(b) loader alone, views/s [{tag}]", f"{r['loader_views_per_s']:,.0f}", "")
            t.add_row(f"(c) training, views/s [{tag}]", f"{r['train_views_per_s']:,.0f}", "")
            t.add_row(f"fed ratio c/a [{tag}]", f"{r['fed_ratio']:.2f}", ">= 1.0 (256 px)" if side == 256 else "report")
            t.add_row(f"peak GPU memory GiB [{tag}]", f"{r['peak_gpu_memory_gb']:.1f}", "")
p = out / "bench_loader.json"
if p.exists():
    data = json.loads(p.read_text())
    for side, rec in (data.get("betons") or {}).items():
        t.add_row(f"loader, ours, samples/s [{side}px]", f"{rec['methods']['ours']['samples_per_s']:,.0f}", "")
        targets = rec.get("targets") or {}
        for name, value in (rec.get("ratios") or {}).items():
            target = targets.get(name)
            shown = f">= {target['target']:g}" if isinstance(target, dict) and "target" in target else ""
            t.add_row(f"loader ratio {name} [{side}px]", f"{value:.2f}", shown)
Console().print(t)
PYEOF
echo "gpu check done in $(( $(date +%s) - t0 )) s; logs and JSON in $OUT"
