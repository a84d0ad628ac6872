#!/usr/bin/env bash
# GPU check on a fresh single-GPU Linux machine (>= 16 cores): install, GPU tests, loader and training
# benchmarks with all cores, GPU-split mode's device cost (colour per batch / ResNet-50 SimCLR bf16 step) and
# its fed ratio with 4, 8 and 16 loader threads, one summary table. About 10-12 minutes.
# Usage: benchmarks/gpu_check.sh [OUT_DIR]
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

echo "== GPU tests (loader GPU path, GPU split = CPU-complete, bf16 ResNet-50 SimCLR step, DDP over NCCL)"
$PY -m pytest -m gpu tests/test_gpu.py -q -s -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"
echo "== GPU split equality tests (CPU tensors)"
$PY -m pytest tests/test_gpu_split.py -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_split_tests.log"

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

echo "== GPU split: device-side colour per batch vs a ResNet-50 SimCLR bf16 step (batch 256, 2 x 224 px)"
$PY benchmarks/gpu_augment.py "$BETON500" --batch 256 --json "$OUT/gpu_augment.json" | tee "$OUT/gpu_augment.log"

for threads in 4 8 16; do
  if [ "$threads" -gt "$CORES" ]; then echo "== skip $threads loader threads: only $CORES cores"; continue; fi
  echo "== fed ratio, GPU split (data.colour_on=device), $threads loader threads, JPEGs stored at <= 500 px"
  $PY -m ffcv_ssl bench train configs/pretrain/simclr_rn50.yaml "data.train=$BETON500" data.batch_size=256 \
      "data.num_workers=$threads" data.colour_on=device model.sync_bn=false --steps 30 --warmup 10 --compile off \
      --json "$OUT/bench_train_split_t$threads.json" | tee "$OUT/bench_train_split_t$threads.log"
done
echo "== fed ratio, GPU split with data.colour_compile=true, $CORES loader threads, <= 500 px"
$PY -m ffcv_ssl bench train configs/pretrain/simclr_rn50.yaml "data.train=$BETON500" data.batch_size=256 \
    "data.num_workers=$CORES" data.colour_on=device data.colour_compile=true model.sync_bn=false --steps 30 \
    --warmup 10 --compile off --json "$OUT/bench_train_split_compiled.json" | tee "$OUT/bench_train_split_compiled.log"

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
p = out / "gpu_augment.json"
if p.exists():
    g = json.loads(p.read_text())
    t.add_row(f"GPU split: colour ms per batch of {g['batch']} x {g['views']} views", f"{g['colour_ms']:.2f}", "")
    t.add_row("GPU split: ResNet-50 SimCLR bf16 step ms", f"{g['simclr_step_ms']:.1f}", "")
    t.add_row("GPU split: colour / step (eager, the default)", f"{100 * g['colour_fraction_of_step']:.2f}%", "<= 3%")
    if "compiled_colour_fraction_of_step" in g:
        t.add_row("GPU split: colour / step (data.colour_compile=true)",
                  f"{100 * g['compiled_colour_fraction_of_step']:.2f}%", "<= 3%")
for threads in (4, 8, 16):
    p = out / f"bench_train_split_t{threads}.json"
    if p.exists():
        r = json.loads(p.read_text())["rows"][0]
        t.add_row(f"GPU split fed ratio, {threads} loader threads [500px]", f"{r['fed_ratio']:.2f}", "report")
        t.add_row(f"GPU split loader alone views/s, {threads} threads [500px]", f"{r['loader_views_per_s']:,.0f}", "")
p = out / "bench_train_split_compiled.json"
if p.exists():
    r = json.loads(p.read_text())["rows"][0]
    t.add_row(f"GPU split fed ratio, colour compiled, {r['workers']} threads [500px]", f"{r['fed_ratio']:.2f}", "report")
p = out / "bench_loader.json"
if p.exists():
    data = json.loads(p.read_text())
    for side, rec in (data.get("betons") or {}).items():
        t.add_row(f"loader, ours, samples/s [{side}px]", f"{rec['methods']['ours']['samples_per_s']:,.0f}", "")
        targets = rec.get("targets") or {}
        for name, value in (rec.get("ratios") or {}).items():
            target = targets.get(name)
            shown = f">= {target['target']:g}" if isinstance(target, dict) and "target" in target else ""
            t.add_row(f"loader ratio {name} [{side}px]", "-" if value is None else f"{value:.2f}", shown)
        for mode in ("ours", "ours_split"):
            host = rec["methods"].get(mode, {}).get("host") or {}
            if host.get("cores_per_5000_views_s"):
                t.add_row(f"host cores per 5,000 views/s, {mode} [{side}px]", f"{host['cores_per_5000_views_s']:.1f}", "")
Console().print(t)
PYEOF
echo "gpu check done in $(( $(date +%s) - t0 )) s; logs and JSON in $OUT"
