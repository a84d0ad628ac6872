"""Sweep files: every experiment of the study expands, validates, and has the study's job counts."""
from pathlib import Path

import pytest

from ffcv_ssl.errors import UserError
from ffcv_ssl.slurm.sweep import expand, find_sweeps, load_sweep, plan, render, validate_inputs

SWEEPS = Path(__file__).resolve().parents[1] / "configs" / "sweeps"
STUDY = {  # experiment -> {stage: jobs}; the counts follow the study's grid (Cole et al. 2022)
    "quantity": {"pretrain": 15, "linear": 15, "finetune": 90, "scratch": 18},      # 3 datasets x 5 sizes (x 6 budgets)
    "domain": {"pretrain": 4, "pretrain_supervised": 4, "evaluate": 16, "supervised": 4},   # 4 x 4 + in-domain row
    "pooling": {"write_pools": 4, "pretrain_pools": 4, "eval_pools": 12, "eval_in_domain": 9},
    "concatenation": {"single": 6, "concat": 4},
    "quality": {"write_train": 6, "pretrain": 12, "evaluate": 12},                      # (5 + clean) x 2 methods
    "granularity": {"pretrain": 3, "pretrain_supervised": 3, "hierarchical": 6},      # 3 panels x 2 methods
    "methods": {"pretrain": 3, "linear": 3, "scratch": 6},                            # SimCLR, BYOL, MoCo; scratch
}
BUDGETS = ["10k", "50k", "125k", "250k", "500k", "1M"]      # Fig 2 / Fig 3 label budgets (Cole et al. 2022)
SIZES = ["50000", "125000", "250000", "500000", "1000000"]


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


# ---------------------------------------------------------------- fidelity to the paper
def _plan(name, sets, extra=()):
    return {stage.name: jobs for stage, jobs in plan(SWEEPS / f"{name}.yaml", [*sets, *extra])[1]}


def _arg(job, key):
    vals = [a.split("=", 1)[1] for a in job.args if a.startswith(key + "=")]
    return vals[0] if vals else None


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Every study sweep expanded once (expansion loads each job's config: seconds per sweep)."""
    import os

    tmp = tmp_path_factory.mktemp("study")
    for d in ("imagenet", "inat21", "places365", "glc20"):
        (tmp / "raw" / d).mkdir(parents=True)
    old = os.getcwd()
    os.chdir(SWEEPS.parents[1])
    try:
        return {name: _plan(name, [f"raw={tmp / 'raw'}", f"data={tmp / 'data'}", f"runs={tmp / 'runs'}"])
                for name in STUDY}
    finally:
        os.chdir(old)


def test_supervised_reference_models_train_on_the_full_training_set(study):
    """Table 1's "Supervised (All Images)" and Fig 5's supervised model see the whole training split."""
    for name in ("domain", "granularity", "concatenation"):
        stages = study[name]
        full = {j.outputs[0] for j in stages["write_train"] if "--subset" not in j.args}
        jobs = stages["pretrain_supervised"]
        assert jobs
        for j in jobs:
            assert j.config.endswith("supervised_rn50.yaml")
            assert _arg(j, "data.train") in full, (name, j.args)
            assert _arg(j, "out_dir").endswith("_all")


def test_fig2b_finetunes_from_every_size_at_every_budget(study):
    """Fig 2b has fine-tuning from 50k ... 1M and the 125k / 500k budgets."""
    ft = study["quantity"]["finetune"]
    cells = {(Path(_arg(j, "checkpoint")).name, _arg(j, "budgets")) for j in ft}
    assert cells == {(f"simclr_{d}_{s}", f"[{b}]") for d in ("inat21", "imagenet", "places365") for s in SIZES
                     for b in BUDGETS}
    scratch = {(Path(_arg(j, "train")).name, _arg(j, "budgets")) for j in study["quantity"]["scratch"]}
    assert scratch == {(f"{d}_train.beton", f"[{b}]") for d in ("inat21", "imagenet", "places365") for b in BUDGETS}


def test_table2_pools_are_evaluated_on_every_column_including_out_of_pool(study):
    ev = {(Path(_arg(j, "checkpoint")).name, Path(_arg(j, "test")).name) for j in study["pooling"]["eval_pools"]}
    pools = ("inat21+imagenet", "inat21+places365", "imagenet+places365", "all4")
    assert ev == {(f"simclr_pool_{p}", f"{d}_val.beton") for p in pools for d in ("inat21", "imagenet", "places365")}
    sizes = {Path(_arg(j, "checkpoint")).name.rsplit("_", 1)[1] for j in study["pooling"]["eval_in_domain"]}
    assert sizes == {"250000", "500000", "1000000"}


def test_table3_has_the_simclr_plus_supervised_concatenation(study):
    concat = study["concatenation"]["concat"]
    others = {(Path(_arg(j, "concat_with").strip("[]")).name, Path(_arg(j, "test")).name) for j in concat}
    assert others == {(o, f"{d}_val.beton") for o in ("simclr_imagenet_1000000", "supervised_imagenet_all")
                      for d in ("inat21", "imagenet")}
    singles = {Path(_arg(j, "checkpoint")).name for j in study["concatenation"]["single"]}
    assert singles == {"simclr_inat21_1000000", "simclr_imagenet_1000000", "supervised_imagenet_all"}


def test_fig5_has_the_imagenet_and_places365_panels(study):
    hier = study["granularity"]["hierarchical"]
    panels = {(Path(_arg(j, "checkpoint")).name, _arg(j, "budgets")) for j in hier}
    assert panels == {(f"{m}_{d}_{s}", "[all]") for d in ("inat21", "imagenet", "places365")
                      for m, s in (("simclr", "1000000"), ("supervised", "all"))}
    imagenet = [j for j in hier if Path(_arg(j, "test")).name == "imagenet_val.beton"]
    assert len(imagenet) == 2
    assert all(_arg(j, "hierarchy_file").endswith("meta.mat") for j in imagenet)
    places = [j for j in study["granularity"]["write_train"] if j.args[0] == "places365"]
    assert any(a.startswith("hierarchy=") for a in places[0].args)


def test_fig3_covers_every_label_budget_and_supervised_is_from_scratch(study):
    m = study["methods"]
    assert {_arg(j, "budgets") for j in m["linear"]} == {"[" + ",".join(BUDGETS) + "]"}
    assert {j.eval_kind for j in m["scratch"]} == {"scratch"}
    assert {_arg(j, "budgets") for j in m["scratch"]} == {f"[{b}]" for b in BUDGETS}
    # the same folder as Fig 2's scratch runs, so the two figures' supervised numbers are one set of runs
    assert {o for j in m["scratch"] for o in j.outputs} <= {o for j in study["quantity"]["scratch"] for o in j.outputs}
    assert "supervised" not in {Path(_arg(j, "out_dir")).name.split("_")[0] for j in m["pretrain"]}


def test_probe_protocol_is_a_sweep_variable(sets, monkeypatch):
    """Every linear-probe stage can run the paper's protocol (SimCLR's augmented 90-epoch probe)."""
    monkeypatch.chdir(SWEEPS.parents[1])
    for name in ("quantity", "domain", "pooling", "quality", "methods"):
        default = _plan(name, sets)
        paper = _plan(name, sets, ["probe=reference_linear"])
        probes = [s for s, jobs in default.items() if jobs[0].kind == "eval" and jobs[0].eval_kind == "linear"]
        assert probes, name
        for s in probes:
            assert {j.eval_kind for j in paper[s]} == {"reference_linear"}, (name, s)
            assert {j.config for j in paper[s]} == {"configs/eval/reference_linear.yaml"}
            assert {j.config for j in default[s]} == {"configs/eval/linear.yaml"}
            assert all("reference_linear-" in o for j in paper[s] for o in j.outputs)


def test_one_supervised_recipe_and_a_simclr_finetune_recipe(study):
    """The supervised backbone recipe equals the from-scratch recipe; fine-tuning SimCLR has no weight decay."""
    from ffcv_ssl.config import load_config
    from ffcv_ssl.evaluation.config import EvalConfig
    from ffcv_ssl.train.config import TrainConfig

    pre = load_config(TrainConfig, "configs/pretrain/supervised_rn50.yaml", ["data.train=x"])
    scratch = load_config(EvalConfig, "configs/eval/supervised_scratch.yaml", ["train=x", "test=y"]).train_protocol
    assert pre.optim == scratch.optim and pre.optim.epochs == scratch.epochs
    assert pre.data.batch_size == scratch.batch_size
    assert pre.objective.supervised.label_smoothing == scratch.label_smoothing
    views = load_config(EvalConfig, "configs/eval/supervised_scratch.yaml", ["train=x", "test=y"]).train_views
    assert list(pre.data.views) == list(views)
    # every supervised backbone of the study trains with that recipe for its own length
    for name, stages in study.items():
        for s, jobs in stages.items():
            for j in jobs:
                if j.kind == "pretrain" and "supervised" in j.config:
                    assert _arg(j, "optim.epochs") == str(pre.optim.epochs), (name, s)
                if j.kind == "eval" and j.eval_kind == "scratch":
                    assert j.config == "configs/eval/supervised_scratch.yaml", (name, s)
                if j.kind == "eval" and j.eval_kind == "finetune":
                    assert j.config == "configs/eval/finetune_simclr.yaml", (name, s)
    ft = load_config(EvalConfig, "configs/eval/finetune_simclr.yaml", ["train=x", "test=y"]).train_protocol
    assert ft.optim.weight_decay == 0.0 and ft.optim != scratch.optim


def test_quantity_schedule_is_constant_epochs_and_says_so(study):
    pre = study["quantity"]["pretrain"]
    assert len({_arg(j, "optim.epochs") for j in pre}) == 1          # constant epochs across 50k ... 1M
    text = (SWEEPS / "quantity.yaml").read_text()
    assert "CONSTANT NUMBER OF EPOCHS" in text and "constant steps" in text


def test_sweeps_never_claim_one_cell_in_two_folders(study):
    """A cell two experiments use (e.g. Table 1's diagonal, Fig 2's scratch runs) is one output in every sweep."""
    where = {}
    for name, stages in study.items():
        for s, jobs in stages.items():
            for j in jobs:
                if j.kind != "eval":
                    continue
                what = (j.eval_kind, _arg(j, "checkpoint"), _arg(j, "concat_with"), _arg(j, "train"),
                        _arg(j, "test"))
                for o in j.outputs:
                    where.setdefault((what, Path(o).parent.name), set()).add(o)
    assert {k: v for k, v in where.items() if len(v) > 1} == {}
