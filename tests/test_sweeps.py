"""Sweep files: every experiment of the study expands, validates, and has the study's job counts."""
from pathlib import Path

import pytest

from ffcv_ssl.errors import UserError
from slurm.sweep import expand, find_sweeps, load_sweep, plan, render, validate_inputs

SWEEPS = Path(__file__).resolve().parents[1] / "configs" / "sweeps"
STUDY = {  # experiment -> {stage: jobs}; the counts follow the study's grid (Cole et al. 2022)
    "quantity": {"pretrain": 15, "linear": 15, "finetune": 12, "scratch": 12},          # 3 datasets x 5 sizes
    "domain": {"pretrain": 8, "evaluate": 32},                                         # 2 methods x 4 x 4
    "pooling": {"write_pools": 4, "pretrain_pools": 4, "eval_pools": 10},
    "concatenation": {"single": 4, "concat": 2},
    "quality": {"write_train": 6, "pretrain": 12, "evaluate": 12},                      # (5 + clean) x 2 methods
    "granularity": {"pretrain": 2, "hierarchical": 2},
    "methods": {"pretrain": 4, "linear": 4},                                           # SimCLR, BYOL, MoCo, supervised
}


@pytest.fixture
def sets(tmp_path):
    raw = tmp_path / "raw"
    for d in ("imagenet", "inat21", "places365", "glc20"):
        (raw / d).mkdir(parents=True)
    return [f"raw={raw}", f"data={tmp_path / 'data'}", f"runs={tmp_path / 'runs'}"]


def test_every_experiment_has_a_sweep_file():
    assert {p.stem for p in find_sweeps(SWEEPS)} >= set(STUDY)


@pytest.mark.parametrize("name", sorted(STUDY))
def test_sweep_expands_validates_and_matches_the_study(name, sets, monkeypatch):
    monkeypatch.chdir(SWEEPS.parents[1])                  # configs/pretrain/... paths are repo-relative
    sweep, stages = plan(SWEEPS / f"{name}.yaml", sets)
    counts = {stage.name: len(jobs) for stage, jobs in stages}
    for stage, n in STUDY[name].items():
        assert counts[stage] == n, (stage, counts)
    names = [j.name for _, jobs in stages for j in jobs]
    assert len(names) == len(set(names))
    outputs = [o for _, jobs in stages for j in jobs for o in j.outputs]
    assert len(outputs) == len(set(outputs))              # no two jobs write the same file


def test_quality_pretrain_jobs_cover_every_condition_and_method(sets, monkeypatch):
    monkeypatch.chdir(SWEEPS.parents[1])
    _, stages = plan(SWEEPS / "quality.yaml", sets)
    pre = next(jobs for stage, jobs in stages if stage.name == "pretrain")
    runs = {Path(a.split("=", 1)[1]).name for j in pre for a in j.args if a.startswith("out_dir=")}
    pairs = {tuple(r.split("_", 1)) for r in runs}
    conditions = {"clean", "salt_pepper", "jpeg", "resize", "downsample2x", "downsample4x"}
    assert pairs == {(m, c) for m in ("simclr", "supervised") for c in conditions}
    # every corrupted pretraining beton is written by the write stage with its paper preset
    writes = next(jobs for stage, jobs in stages if stage.name == "write_train")
    presets = {a for j in writes for a in j.args if a.startswith("paper_")}
    assert presets == {f"paper_{c}" for c in conditions - {"clean"}}


def test_template_errors_and_unknown_keys(tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r"template variable '\{nope\}' is not defined"):
        render("{nope}", {"a": 1}, "stage x")
    assert render("{a}/{b}", {"a": "{c}", "b": 2, "c": "deep"}, "w") == "deep/2"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages:\n  - {name: s, kind: pretrain, gird: {a: [1]}}\n")
    with pytest.raises(Exception, match="unknown config key 'stages.0.gird'; did you mean 'grid'"):
        load_sweep(bad)
    monkeypatch.chdir(SWEEPS.parents[1])
    with pytest.raises(UserError, match="the sweep has no variable 'dta'; did you mean 'data'"):
        load_sweep(SWEEPS / "quality.yaml", ["dta=x"])


def test_missing_input_with_no_producing_stage_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(SWEEPS.parents[1])
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "name: s\nvars: {runs: " + str(tmp_path) + "}\nstages:\n"
        "  - name: evaluate\n    kind: eval\n    eval_kind: linear\n"
        "    args: ['checkpoint=random arch=resnet18 train={runs}/nope.beton test={runs}/nope.beton out_dir={runs}/e']\n")
    with pytest.raises(UserError, match=r"stage evaluate, job evaluate\[-\] needs .*nope.beton: it does not exist "
                                        "and no earlier stage produces it"):
        validate_inputs(expand(load_sweep(sweep)))
