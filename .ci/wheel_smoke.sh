#!/usr/bin/env bash
# CI: the package as a cluster user installs it. Build a wheel, install it (not editable) into a fresh venv outside
# the repository, and from an empty directory run: --version, an import of every module, then
# write -> pretrain a few steps -> eval linear -> report on the embedded digits. Fails on any missing module or
# data file (configs, paper values, cluster.sh are read from the installed package, not the checkout).
set -euo pipefail
repo="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
work="$(mktemp -d /tmp/ffcv-ssl-wheel.XXXXXX)"
trap 'rm -rf "$work"' EXIT
quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location 'file://.*' is ignored" >&2); }
log() { printf '\033[1m[wheel]\033[0m %s\n' "$*" >&2; }
start=$(date +%s)

log "building the wheel"
rm -rf "$repo/build"       # setuptools' build/lib would ship stale copies of removed modules
"$py" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$repo" 2>&1 | grep -v "^$" || true
wheel="$(ls "$work"/dist/ffcv_ssl-*.whl)"
log "installing $(basename "$wheel") into a fresh venv"
"$py" -m venv "$work/venv"
quiet_pip "$work/venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
quiet_pip "$work/venv/bin/python" -m pip install -q "$wheel"
bin="$work/venv/bin"
mkdir "$work/cwd" && cd "$work/cwd"      # nothing of the checkout is reachable from here

"$bin/ffcv-ssl" --version
"$bin/python" - <<'PY'
"""Every module of the installed distribution imports, and the package data is present."""
import importlib, pkgutil, sys
from pathlib import Path
import ffcv_ssl, dataset_writers
assert "site-packages" in ffcv_ssl.__file__, f"ffcv_ssl imported from {ffcv_ssl.__file__}, not the installed wheel"
names = []
for pkg in (ffcv_ssl, dataset_writers):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if not m.name.endswith(".__main__"):     # runs the CLI when imported
            names.append(m.name)
for name in names:
    importlib.import_module(name)
root = Path(ffcv_ssl.__file__).parent
for rel in ("data/paper_values.yaml", "slurm/cluster.sh", "configs/pretrain/simclr_rn50.yaml",
            "configs/sweeps/quantity.yaml", "train/engine.py"):
    assert (root / rel).is_file(), f"missing from the wheel: ffcv_ssl/{rel}"
try:
    import slurm  # noqa: F401
    sys.exit("a top-level 'slurm' module is importable: the wheel must ship it as ffcv_ssl.slurm only")
except ImportError:
    pass
print(f"imported {len(names)} modules; package data present")
PY

export FFCV_SSL_NO_PROGRESS=1
# the betons named as the shipped demo_quick sweep expects them, so that its dry run validates against them
"$bin/ffcv-ssl" write digits --split train --out data/digits_train_clean.beton
"$bin/ffcv-ssl" write digits --split train --corrupt downsample:size=32,factor=8 \
    --out data/digits_train_downsample8x.beton
"$bin/ffcv-ssl" write digits --split test --out data/digits_test.beton
"$bin/ffcv-ssl" pretrain configs/pretrain/demo_simclr.yaml data.train=data/digits_train_clean.beton \
    optim.epochs=1 optim.warmup_epochs=0 out_dir=runs/pretrain/simclr
"$bin/ffcv-ssl" eval linear checkpoint=runs/pretrain/simclr arch=ssl_resnet10_tiny \
    train=data/digits_train_clean.beton test=data/digits_test.beton budgets=[all] eval_size=32 \
    linear.max_iter=50 out_dir=runs/eval/simclr
# a shipped sweep resolves its configs/pretrain/... paths against the installed package
"$bin/ffcv-ssl" submit configs/sweeps/demo_quick.yaml --dry-run --set "data=$PWD/data" --set "runs=$PWD/sweep"
"$bin/ffcv-ssl" report runs --out report
test -s report/report.md || { log "no report/report.md"; exit 1; }
grep -q "linear" report/report.md
log "passed in $(( $(date +%s) - start )) s"
