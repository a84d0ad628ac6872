"""``ffcv-ssl rehearse``: the study's sweep files, unchanged, end to end at rehearsal scale.

Fast tests check the profile (the exact count map, applied through the sweep hook to every sweep file
without touching it) and the fixture datasets (label structure that breaks things at full scale, read by
the real writers). A local run rehearses one sweep through the CLI; the SLURM test rehearses all seven on
the real single-node cluster and checks that no job failed and that every report holds every paper cell.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ffcv_ssl.errors import UserError
from ffcv_ssl.rehearse.fixtures import FixtureSpec, build_rehearsal_datasets, inat_taxonomy
from ffcv_ssl.rehearse.profile import SCALE_MAP, RehearsalProfile
from ffcv_ssl.rehearse.run import STUDY_SWEEPS, SWEEP_TABLES, plan_rehearsal, sweep_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fixtures_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal") / "fixtures"
    build_rehearsal_datasets(root)
    return root


# ------------------------------------------------------------------------------------------------ profile

def test_count_map_is_the_documented_one_and_never_rounds():
    p = RehearsalProfile()
    assert {k: p.count(k, "t") for k in SCALE_MAP} == SCALE_MAP
    assert p.count("1000000", "t") == "1000" and p.count("250000", "t") == "250"
    assert p.budgets("[10k,50k,125k,250k,500k,1M,all]", "t") == "[10,50,125,250,500,1000,all]"
    with pytest.raises(UserError, match="not a multiple of 1000"):
        p.count("1797", "stage x")
    # and the documentation states the same map
    doc = (REPO / "docs" / "sweeps.md").read_text()
    assert "10k→10, 50k→50, 125k→125, 250k→250, 500k→500, 1M→1000, `all` stays `all`" in doc


def test_every_study_sweep_plans_unchanged_with_only_the_profile_on_top(fixtures_root, tmp_path):
    """Every count argument is scaled, every stage fits one CPU, and no sweep file is modified."""
    before = {s: hashlib.sha256(sweep_path(s).read_bytes()).hexdigest() for s in STUDY_SWEEPS}
    p = RehearsalProfile()
    for name in STUDY_SWEEPS:
        sweep, stages = plan_rehearsal(sweep_path(name), p, fixtures_root, tmp_path / "data", tmp_path / "runs")
        assert sweep.name == name and stages
        for stage, jobs in stages:
            assert stage.resources.gpus_per_node == 0 and stage.resources.cpus_per_task == 1
            for job in jobs:
                argv = job.argv()
                for i, tok in enumerate(argv):
                    if tok == "--subset":
                        assert int(argv[i + 1]) <= 1000, (job.name, argv)
                    if tok.startswith("budgets="):
                        assert all(b == "all" or int(b) <= 1000 for b in tok[9:-1].split(",")), (job.name, tok)
                    if tok.startswith("--root"):
                        assert str(fixtures_root) in argv[i + 1]
                if job.kind == "pretrain":
                    assert f"model.arch={p.arch}" in argv and "optim.epochs=1" in argv
    after = {s: hashlib.sha256(sweep_path(s).read_bytes()).hexdigest() for s in STUDY_SWEEPS}
    assert before == after
    assert {v: k for k, v in p.scaled.items()}.keys() >= {50000, 250000, 1000000}


# ------------------------------------------------------------------------------------------------ packs

def test_packs_split_a_stage_evenly_and_keep_every_slot_busy():
    from ffcv_ssl.slurm.submit import make_packs

    jobs = list(range(90))
    groups = make_packs(jobs, 8, 2)
    assert [j for g in groups for j in g] == jobs and len(groups) == 12 and {len(g) for g in groups} <= {7, 8}
    assert [len(g) for g in make_packs(list(range(3)), 8, 2)] == [2, 1]      # 2 slots: 2 tasks, not 1
    assert make_packs(list(range(3)), 1, 2) == [[0], [1], [2]]               # pack 1: one process per job


def test_a_pack_runs_every_member_and_reports_each_failure_by_name(tmp_path):
    """A failing member does not stop the others; the error names it, and member_error finds its line."""
    from ffcv_ssl.slurm.jobs import JobPack, make_job, member_error

    done = make_job("write", name="w_done", stage="w", config="", eval_kind="",
                    args=("imagenet", "--root", str(tmp_path), "--split", "val", "--out", str(tmp_path / "a.beton")))
    (tmp_path / "a.beton").write_bytes(b"x")                                  # outputs exist: skipped
    bad = make_job("write", name="w_bad", stage="w", config="", eval_kind="",
                   args=("imagenet", "--root", str(tmp_path / "missing"), "--split", "val",
                         "--out", str(tmp_path / "b.beton")))
    pack = JobPack((bad, done))
    with pytest.raises(RuntimeError) as err:
        pack()
    text = str(err.value)
    assert "1 of 2 packed job(s) failed" in text
    assert "does not exist" in member_error(text, "w_bad") and member_error(text, "w_bad") != text
    assert not (tmp_path / "b.beton").exists()


def test_summary_table_keeps_job_names_with_brackets():
    """Job names are ``stage[var=value,...]``: printed through rich, they must not be eaten as markup."""
    from rich.console import Console

    from ffcv_ssl.rehearse.run import SweepOutcome, summary_table

    o = SweepOutcome("quantity", jobs=3, failed=["FAILED finetune[dataset=inat21,size=50000]: boom"],
                     error="plan failed at scratch[dataset=inat21]")
    con = Console(record=True, width=200)
    con.print(summary_table([o]))
    assert "scratch[dataset=inat21]" in con.export_text()


# ------------------------------------------------------------------------------------------------ fixtures

def test_fixtures_have_the_label_structure_that_breaks_things(fixtures_root, tmp_path):
    """>= 100 classes, the highest class id missing from small budgets but in val, 7 iNat21 levels, the
    Places365 hierarchy, both GLC20 packagings: all read by the real writers."""
    from dataset_writers.manifest import read_manifest
    from dataset_writers.write import ImageOptions, write_dataset
    from dataset_writers.subsets import budget_positions

    spec = FixtureSpec()
    counts = spec.class_counts()
    assert counts.sum() == spec.train and counts.min() >= 1 and counts[-1] == 1
    image = ImageOptions(max_resolution=64)
    m = {}
    for name, split, opts in [("inat21", "train", []), ("inat21", "val", []), ("imagenet", "train", []),
                              ("places365", "val", ["hierarchy=scene_hierarchy_places365.csv"])]:
        out = tmp_path / f"{name}_{split}.beton"
        m[name, split] = write_dataset(name, fixtures_root / name, split, out, options=opts, image=image, workers=1)
    for key in m:
        assert m[key].num_classes >= 100, key
    top = m["inat21", "train"].num_classes - 1
    from fixtures.datasets import read_beton     # tests/ is on sys.path

    train = read_beton(tmp_path / "inat21_train.beton", image=False)
    val = read_beton(tmp_path / "inat21_val.beton", image=False)
    assert top in set(val["label"].tolist())
    for budget in (10, 50):
        labels = train["label"][budget_positions(train["label"], budget, seed=0)]
        assert top not in set(labels.tolist()) and len(set(labels.tolist())) < 100
    levels = read_manifest(tmp_path / "inat21_train.beton")
    names = json.dumps(levels.to_dict())
    for level in ("kingdom", "phylum", "class", "order", "family", "genus", "species"):
        assert f'"{level}"' in names
    assert len({t["genus"] for t in inat_taxonomy(120)}) < len({(t["kingdom"], t["genus"]) for t in inat_taxonomy(120)})
    places = json.dumps(read_manifest(tmp_path / "places365_val.beton").to_dict())
    assert '"places3"' in places and '"places16"' in places
    glc = {}
    for packaging in ("glc20", "glc20_original"):
        out = tmp_path / f"{packaging}.beton"
        glc[packaging] = write_dataset("glc20", fixtures_root / packaging, "train", out, image=image, workers=1)
        assert glc[packaging].num_samples > 0
    assert write_dataset("glc20", fixtures_root / "glc20", "val", tmp_path / "glc_val.beton", image=image,
                         workers=1).num_samples == spec.glc_val


def test_fixtures_are_deterministic_and_built_once(fixtures_root, tmp_path):
    again = tmp_path / "again"
    build_rehearsal_datasets(again)
    a = (fixtures_root / "inat21" / "train.json").read_bytes()
    assert a == (again / "inat21" / "train.json").read_bytes()
    one = next((fixtures_root / "places365" / "val_256").iterdir())
    assert one.read_bytes() == (again / "places365" / "val_256" / one.name).read_bytes()
    t = (again / "rehearsal_fixtures.json").stat().st_mtime_ns
    build_rehearsal_datasets(again)                                    # reused, not rebuilt
    assert (again / "rehearsal_fixtures.json").stat().st_mtime_ns == t


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not Path("/usr/bin/taskset").exists(),
                    reason="needs taskset")
def test_a_one_cpu_job_exits_after_its_work(fixtures_root, tmp_path):
    """Found by the SLURM rehearsal: on a 1-CPU affinity mask (a SLURM task with cpus_per_task=1), numba's TBB
    layer deadlocked at interpreter exit (``unload_tbb``), so a finished ``ffcv-ssl write`` never ended and
    its array blocked every later stage until the time limit."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NUMBA_THREADING_LAYER", None)
    cmd = ["taskset", "-c", str(min(os.sched_getaffinity(0))), sys.executable, "-m", "ffcv_ssl", "write", "glc20",
           "--root", str(fixtures_root / "glc20_original"), "--split", "train", "--out", str(tmp_path / "g.beton"),
           "--workers", "1"]
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("ffcv-ssl write on one CPU did not exit within 240 s (it wrote its beton: "
                    f"{(tmp_path / 'g.beton').exists()})")
    assert res.returncode == 0, res.stderr[-2000:]


def test_imagenet_hierarchy_from_meta_mat_uses_the_betons_wnids(fixtures_root, tmp_path):
    """Found by the granularity rehearsal: the hierarchical evaluation looked the beton's ``class_names`` up in
    meta.mat, but ImageNet's class names are words ("tench, Tinca tinca"); the WNIDs are in the manifest's
    reader options. The Fig 5 ImageNet panel failed for every real ImageNet layout with a synset mapping."""
    from dataset_writers.write import ImageOptions, write_dataset
    from ffcv_ssl.evaluation.runner import hierarchy_from_file

    out = tmp_path / "imagenet_val.beton"
    write_dataset("imagenet", fixtures_root / "imagenet", "val", out, image=ImageOptions(max_resolution=64), workers=1)
    meta = fixtures_root / "imagenet" / "ILSVRC2012_devkit_t12" / "data" / "meta.mat"
    h = hierarchy_from_file(meta, str(out))
    assert h.fine_names[0].startswith("n0") and len(h.fine_names) == 120 and len(h.levels) >= 2


# ------------------------------------------------------------------------------------------------ end to end

def _check_outcome(out: Path, names):
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["sweep"]: r for r in summary["sweeps"]}
    assert set(rows) == set(names)
    from ffcv_ssl.report import load_paper_values

    paper = load_paper_values()
    for name, row in rows.items():
        assert not row["error"] and not row["failed"], (name, row["error"], row["failed"][:3])
        report = Path(row["report"])
        assert report.is_file(), name
        text = report.read_text()
        assert "**Rehearsal**" in text
        assert row["paper_cells"] > 0 and row["missing_paper_cells"] == [], (name, row["missing_paper_cells"])
        # every paper value of the experiment is printed in its report, beside ours
        values = [v for v in paper.values if any(v.table.startswith(t) for t in SWEEP_TABLES[name])]
        for v in values:
            assert f"{v.value:.3f}" in text, (name, v)
    return rows


def _run_cli(args, env_extra=None, timeout=3000):
    env = {**os.environ, "PYTHONPATH": str(REPO), "FFCV_SSL_NO_PROGRESS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "ffcv_ssl", "rehearse", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_rehearsal(slurm_cluster, tmp_path_factory):
    """All seven study sweeps rehearsed once on the real cluster, into one shared tree (~10 min on 2 cores)."""
    out = tmp_path_factory.mktemp("rehearsal_slurm")
    start = time.monotonic()
    res = _run_cli(["--cluster", "slurm", "--out", str(out), "--partition", slurm_cluster.partition])
    return out, res, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(3600)
def test_rehearse_all_seven_sweeps_on_slurm(slurm_rehearsal):
    out, res, seconds = slurm_rehearsal
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-4000:]
    rows = _check_outcome(out, STUDY_SWEEPS)
    table = res.stdout[res.stdout.rindex("ffcv-ssl rehearse"):]
    for name in STUDY_SWEEPS:
        assert name in table
    assert sum(r["submitted"] for r in rows.values()) > 0
    print(f"rehearsal of all seven sweeps on SLURM: {seconds:.0f} s")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_rehearse_one_sweep_locally(request, tmp_path):
    """The CLI on the local executor: the methods sweep (Fig 3), 0 failures, its report and the table.

    Where the SLURM rehearsal ran, the local run continues its tree (as a user re-running after a partial
    failure would): the BYOL probe's results are removed, so exactly that work runs again on the local
    executor while everything finished is skipped. Without a cluster, methods runs from nothing.
    """
    try:
        out, first, _ = request.getfixturevalue("slurm_rehearsal")
        assert first.returncode == 0, "the SLURM rehearsal failed (see its own test)"
    except pytest.skip.Exception:
        out = tmp_path
    redo = sorted((out / "runs" / "eval").glob("byol_inat21_*_on_inat21"))
    for d in redo:
        shutil.rmtree(d)
    res = _run_cli(["methods", "--cluster", "local", "--out", str(out)], timeout=1200)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "ffcv-ssl rehearse" in res.stdout and "methods" in res.stdout      # the table
    _check_outcome(out, ["methods"])
    row = json.loads((out / "summary.json").read_text())["sweeps"][0]
    if redo:
        assert row["submitted"] == 1 and row["skipped"] == row["jobs"] - 1, row   # only the removed work ran
    again = _run_cli(["methods", "--cluster", "local", "--out", str(out)], timeout=600)
    assert again.returncode == 0
    row = json.loads((out / "summary.json").read_text())["sweeps"][0]
    assert row["submitted"] == 0 and row["skipped"] == row["jobs"]           # finished work is skipped


def test_summary_table_never_cuts_a_sweep_name_on_a_narrow_console():
    """Captured output (a log, a test, SLURM's stdout) is 80 columns: 'concatenation' once printed as 'concatenat…'."""
    import io

    from rich.console import Console

    from ffcv_ssl.rehearse.run import SweepOutcome, summary_table

    rows = [SweepOutcome(name=n, jobs=100, submitted=90, skipped=10, failed=[], seconds=123.0,
                         report=Path("/scratch/a/very/long/rehearsal/folder/reports") / n / "report.md",
                         paper_cells=24, paper_cells_covered=24, missing_cells=[], error="") for n in STUDY_SWEEPS]
    buf = io.StringIO()
    Console(file=buf, width=80).print(summary_table(rows))
    text = buf.getvalue()
    for name in STUDY_SWEEPS:
        assert f" {name} " in text
    assert "/scratch/a/very/long/rehearsal/folder/reports" in text.replace("\n", "").replace(" ", "")
