"""The report on a fixture of real results.json files: exact table cells (parsed back from report.md), the
paper's values and differences, direction checks, problems (conflicting and identical duplicates, unknown
schema, unreadable and invalid files, missing cells), plotted data and PNG files, absent sections."""
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from ffcv_ssl.cli import main
from ffcv_ssl.report import build_report, collect, load_paper_values, report, write_report
from ffcv_ssl.report.claims import CLAIMS
from ffcv_ssl.report.collect import ReportError
from ffcv_ssl.report.experiments import paper_condition
from ffcv_ssl.report.figures import PAPER_LABEL, SCRATCH_LABEL
from ffcv_ssl.report.paper import PAPER_VALUES, parse_paper_values
from ffcv_ssl.results import EvalInfo, PretrainInfo, Results, write_results

REPO = Path(__file__).resolve().parents[1]

POOL4 = ("glc20", "imagenet", "inat21", "places365")


class Runs:
    """Writes results files with the project's own writer, one folder per run."""

    def __init__(self, root: Path):
        self.root, self.n = root, 0

    def add(self, top1, kind, method, dataset, size, eval_dataset, budget, corruption="none", pool=(), concat=(),
            levels=None, seed=0, extra=None, folder=None, arch="resnet18", protocol="cached features", train=""):
        self.n += 1
        res = Results(PretrainInfo(method=method, dataset=dataset, size=size, corruption=corruption, pool=list(pool),
                                   arch=arch, seed=seed),
                      EvalInfo(kind=kind, dataset=eval_dataset, budget=budget, protocol=protocol, train=train),
                      {"top1": top1, "top5": min(1.0, top1 + 0.1)}, levels=levels or {},
                      concat=[PretrainInfo(method=m, dataset=d, size=s) for m, d, s in concat], extra=extra or {})
        return write_results(res, self.root / (folder or f"run{self.n:03d}") / "results.json")


def build_fixture(root: Path) -> Path:
    r = Runs(root)
    # Fig. 2 (digits): three pretraining sizes, scratch, fine-tuning; 600 @ 500 labels is claimed twice (conflict).
    all_labels = {"n_train": 1437}
    for size, values in [(300, (0.52, 0.61)), (600, (0.58, 0.70)), (1200, (0.63, 0.74))]:
        for budget, v in zip((100, 500), values):
            r.add(v, "linear", "simclr", "digits", size, "digits", budget)
    r.add(0.72, "linear", "simclr", "digits", 600, "digits", 500, folder="again/600_500", arch="resnet50")
    r.add(0.78, "linear", "simclr", "digits", 1200, "digits", None, extra=all_labels)
    for budget, v in [(100, 0.40), (500, 0.80), (None, 0.90)]:
        r.add(v, "scratch", "none", "", None, "digits", budget, extra=all_labels)
    r.add(0.66, "finetune", "simclr", "digits", 1200, "digits", 100)
    r.add(0.85, "finetune", "simclr", "digits", 1200, "digits", 500)
    # Table 1: SimCLR matrix with ImageNet -> iNat21 missing; a supervised matrix.
    matrix = {("inat21", "inat21"): 0.50, ("inat21", "imagenet"): 0.41, ("inat21", "places365"): 0.44,
              ("imagenet", "imagenet"): 0.66, ("imagenet", "places365"): 0.52,
              ("places365", "inat21"): 0.30, ("places365", "imagenet"): 0.45, ("places365", "places365"): 0.49}
    for (src, dst), v in matrix.items():
        r.add(v, "linear", "simclr", src, 1_000_000, dst, None)
    r.add(0.80, "linear", "supervised", "inat21", 1_000_000, "inat21", None)
    r.add(0.60, "linear", "supervised", "imagenet", 1_000_000, "inat21", None)
    # Table 2: pools and in-domain sizes (in-domain 500k on iNat21 is missing).
    r.add(0.60, "linear", "simclr", "imagenet", 250_000, "imagenet", None)
    r.add(0.46, "linear", "simclr", "inat21", 250_000, "inat21", None)
    r.add(0.63, "linear", "simclr", "imagenet", 500_000, "imagenet", None)
    r.add(0.62, "linear", "simclr", "pool", 500_000, "imagenet", None, pool=("inat21", "imagenet"))
    r.add(0.45, "linear", "simclr", "pool", 500_000, "inat21", None, pool=("imagenet", "inat21"))
    r.add(0.55, "linear", "simclr", "pool", 1_000_000, "imagenet", None, pool=POOL4)
    r.add(0.42, "linear", "simclr", "pool", 1_000_000, "inat21", None, pool=POOL4)
    # Table 3: concatenations.
    r.add(0.665, "linear", "simclr", "imagenet", 1_000_000, "imagenet", None, concat=[("simclr", "inat21", 1_000_000)])
    r.add(0.55, "linear", "simclr", "places365", 1_000_000, "places365", None,
          concat=[("simclr", "imagenet", 1_000_000)])
    # Fig. 4: digits (supervised salt & pepper missing) and one ImageNet condition the paper has.
    r.add(0.92, "linear", "supervised", "digits", 1200, "digits", None)
    for corruption, sim, sup in [("jpeg:quality=10", 0.75, 0.91), ("downsample:factor=2,size=32", 0.70, 0.90),
                                 ("downsample:factor=4,size=32", 0.55, 0.86), ("salt_pepper:p=0.05", 0.77, None)]:
        r.add(sim, "linear", "simclr", "digits", 1200, "digits", None, corruption=corruption)
        if sup is not None:
            r.add(sup, "linear", "supervised", "digits", 1200, "digits", None, corruption=corruption)
    r.add(0.30, "linear", "simclr", "imagenet", 1_000_000, "imagenet", None, corruption="downsample:factor=4,size=224")
    # Fig. 5: digits with both methods; iNat21 SimCLR only, levels written out of order.
    r.add(0.78, "hierarchical", "simclr", "digits", 1200, "digits", None, levels={"half": 0.95, "digit": 0.78})
    r.add(0.92, "hierarchical", "supervised", "digits", 1200, "digits", None, levels={"half": 0.97, "digit": 0.92})
    r.add(0.45, "hierarchical", "simclr", "inat21", 1_000_000, "inat21", None,
          levels={"species": 0.45, "kingdom": 0.97, "genus": 0.50})
    # Baselines: a random backbone written twice with identical values; kNN with two seeds (replicates).
    r.add(0.21, "linear", "random", "digits", None, "digits", 500, folder="random/a")
    r.add(0.21, "linear", "random", "digits", None, "digits", 500, folder="random/b")
    r.add(0.30, "knn", "random", "digits", None, "digits", None)
    r.add(0.80, "knn", "simclr", "digits", 1200, "digits", None, seed=0)
    r.add(0.84, "knn", "simclr", "digits", 1200, "digits", None, seed=1)
    # Files the report cannot use.
    (root / "broken").mkdir()
    (root / "broken" / "results.json").write_text('{"schema": "ffcv-ssl/results/1", ')
    (root / "future").mkdir()
    (root / "future" / "results.json").write_text(json.dumps({"schema": "ffcv-ssl/results/2", "metrics": {}}))
    (root / "invalid").mkdir()
    (root / "invalid" / "results.json").write_text(json.dumps(
        {"schema": "ffcv-ssl/results/1", "pretrain": {"method": "simclr"},
         "eval": {"kind": "linear", "dataset": "digits"}, "metrics": {"top5": 0.5}}))
    (root / "notes.json").write_text("{}")          # not named results.json: ignored
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    runs = build_fixture(tmp_path_factory.mktemp("runs"))
    out = tmp_path_factory.mktemp("out") / "report"
    rep = build_report(runs)
    path = write_report(rep, out)       # report() = build_report + write_report; the CLI test runs report()
    return runs, out, path, path.read_text(encoding="utf-8"), rep


def section(md: str, title_start: str) -> str:
    parts = re.split(r"^## ", md, flags=re.M)
    hits = [p for p in parts if p.startswith(title_start)]
    assert len(hits) == 1, f"section {title_start!r}: {len(hits)} found"
    return hits[0]


def tables(text: str):
    """Every markdown table in ``text`` as a list of rows (dicts header -> cell text)."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in lines[i].strip("|").split(" | ")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip().replace("\\|", "|") for c in lines[i].strip().strip("|").split(" | ")]
                rows.append(dict(zip(header, cells)))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


def by_first(rows):
    return {next(iter(r.values())): r for r in rows}


def problems(md: str, kind: str):
    return [line for line in section(md, "Problems").splitlines() if line.startswith(f"- **{kind}**")]


# ---------------------------------------------------------------- collect
def test_collect_resolves_cells_and_lists_every_unusable_file(built):
    runs, *_ = built
    col = collect(runs)
    assert col.n_files == 52                     # 49 written + broken + future + invalid; notes.json ignored
    kinds = sorted(p.kind for p in col.problems)
    assert kinds == ["conflict", "duplicate", "invalid", "unknown-schema", "unreadable"]
    conflict = next(p for p in col.problems if p.kind == "conflict")
    assert {str(p) for p in conflict.paths} == {"run004/results.json", "again/600_500/results.json"}
    assert "top1=0.7000" in conflict.message and "top1=0.7200" in conflict.message
    assert "pretrain.arch" in conflict.message   # says why the two runs may disagree
    cells = {c.key.describe(): c for c in col.cells.values()}
    assert cells["linear SimCLR digits 600 -> digits budget 500"].top1 is None
    assert cells["linear SimCLR digits 600 -> digits budget 500"].conflict
    knn = cells["knn SimCLR digits 1200 -> digits budget all"]
    assert knn.replicates == 2 and knn.top1 == pytest.approx(0.82) and knn.metrics["top5"] == pytest.approx(0.92)
    rnd = cells["linear random init (digits) -> digits budget 500"]
    assert rnd.top1 == 0.21 and len(rnd.records) == 2 and rnd.replicates == 1


def test_collect_follows_links_once(tmp_path):
    r = Runs(tmp_path / "runs")
    r.add(0.5, "knn", "simclr", "digits", 1200, "digits", None)
    (tmp_path / "runs" / "loop").symlink_to(tmp_path / "runs")        # a link back up the tree
    col = collect(tmp_path / "runs")
    assert col.n_files == 1 and not col.problems


def test_collect_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        collect(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReportError, match="is a file"):
        collect(tmp_path / "file")


# ---------------------------------------------------------------- tables, exact cells
def test_fig2_table_exact_cells(built):
    md = built[3]
    sec = section(md, "Fig. 2")
    linear, finetune = tables(sec)
    assert [list(r.values()) for r in linear] == [
        ["100", "0.520", "0.580", "0.630", "0.400"],
        ["500", "0.610", "conflict", "0.740", "0.800"],
        ["all", "–", "–", "0.780", "0.900"]]
    assert list(linear[0]) == ["labelled images", "SimCLR 300", "SimCLR 600", "SimCLR 1200", "scratch"]
    assert [list(r.values()) for r in finetune] == [["100", "0.660", "0.400"], ["500", "0.850", "0.800"],
                                                     ["all", "–", "0.900"]]
    # holes beyond a curve's ends are not "missing"; nothing in Fig. 2 is
    assert not [p for p in problems(md, "missing") if "Fig. 2" in p]


def test_table1_matrix_with_paper_values_and_missing_cell(built):
    md = built[3]
    simclr, supervised = tables(section(md, "Table 1"))
    rows = by_first(simclr)
    assert rows["iNat21 (1M)"] == {"pretraining \\ evaluation": "iNat21 (1M)",
                                   "iNat21": "0.500 (paper 0.493, diff +0.007)",
                                   "ImageNet": "0.410 (paper 0.519, diff -0.109)",      # off-diagonal: Table 1 too
                                   "Places365": "0.440 (paper 0.416, diff +0.024)"}
    # the paper's "Supervised (All Images)" row under the SimCLR matrix: in-domain supervised backbones only
    assert rows["supervised, in-domain (1M)"] == {"pretraining \\ evaluation": "supervised, in-domain (1M)",
                                                  "iNat21": "0.800 (paper 0.791, diff +0.009)", "ImageNet": "–",
                                                  "Places365": "–"}
    assert rows["ImageNet (1M)"]["iNat21"] == "–"
    assert rows["ImageNet (1M)"]["ImageNet"] == "0.660 (paper 0.644, diff +0.016)"
    assert rows["Places365 (1M)"]["Places365"] == "0.490 (paper 0.501, diff -0.011)"
    assert [list(r.values()) for r in supervised] == [["iNat21 (1M)", "0.800 (paper 0.791, diff +0.009)"],
                                                       ["ImageNet (1M)", "0.600"]]
    assert any("Table 1 SimCLR: no result for ImageNet 1M -> iNat21 (all labels)" in p for p in problems(md, "missing"))
    text = section(md, "Table 1")
    # the supervised matrix is shown but not checked: the paper reports no supervised cross-domain cell
    assert "beats every cross-domain one (each column of a self-supervised matrix; the paper reports no supervised " \
           "cross-domain cell, so none is checked): **partly holds** (2/3; fails: SimCLR on Places365 (in-domain " \
           "0.490 vs ImageNet 0.520))" in text
    assert "Protocol: `linear` = cached features." in text


def test_table2_pools_exact(built):
    md = built[3]
    (t,) = tables(section(md, "Table 2"))
    rows = by_first(t)
    assert list(rows) == ["in-domain 250k", "in-domain 500k", "in-domain 1M", "pool(ImageNet+iNat21) 500k",
                          "pool(GLC20+ImageNet+iNat21+Places365) 1M"]
    assert rows["in-domain 250k"]["ImageNet"] == "0.600 (paper 0.608, diff -0.008)"
    assert rows["in-domain 250k"]["iNat21"] == "0.460 (paper 0.451, diff +0.009)"
    assert rows["in-domain 500k"]["ImageNet"] == "0.630 (paper 0.629, diff +0.001)"
    assert rows["in-domain 500k"]["iNat21"] == "–"
    assert rows["in-domain 1M"]["ImageNet"] == "0.660 (paper 0.644, diff +0.016)"   # Table 1's value, same cell
    assert rows["pool(ImageNet+iNat21) 500k"] == {"pretraining": "pool(ImageNet+iNat21) 500k",
                                                  "ImageNet": "0.620 (paper 0.597, diff +0.023)",
                                                  "iNat21": "0.450 (paper 0.444, diff +0.006)"}
    assert rows["pool(GLC20+ImageNet+iNat21+Places365) 1M"]["iNat21"] == "0.420 (paper 0.410, diff +0.010)"
    assert any("in-domain 500k on iNat21" in p for p in problems(md, "missing"))
    text = section(md, "Table 2")
    assert "same total size, on every evaluation dataset (in or out of the pool): **holds** (3/3" in text
    # only the 4-way pool is held to its own share (the paper's 2-way pools do not all hold it)
    assert "its own share (size / 4) alone (2-way pools are not claimed: ImageNet+Places365 on Places365 is 0.490 " \
           "vs in-domain 250k 0.485): **holds** (2/2)" in text


def test_table3_concat_exact(built):
    (t,) = tables(section(built[3], "Table 3"))
    assert [(r["evaluation"], r["each alone"], r["concatenated"], r["gain vs best single"], r["gain vs in-domain"])
            for r in t] == [("ImageNet", "0.660 / 0.410", "0.665", "+0.005", "+0.005 (paper -0.006, diff +0.011)"),
                            ("Places365", "0.490 / 0.520", "0.550", "+0.030", "+0.060")]
    assert "largely redundant): **partly holds** (1/2; fails: linear SimCLR Places365 1M + SimCLR ImageNet 1M -> " \
           "Places365 budget all (gain vs in-domain alone +0.060))" in section(built[3], "Table 3")


def test_fig4_deltas_exact_with_paper_and_worst_corruption(built):
    md = built[3]
    sec = section(md, "Fig. 4")
    digits, imagenet = tables(sec)
    assert [list(r.values()) for r in digits] == [
        ["salt_pepper:p=0.05", "salt & pepper", "–", "-0.010"],
        ["jpeg:quality=10", "JPEG", "-0.010", "-0.030"],
        ["downsample:factor=2,size=32", "resize + 2x downsample", "-0.020", "-0.080"],
        ["downsample:factor=4,size=32", "resize + 4x downsample", "-0.060", "-0.230"]]
    assert list(digits[0]) == ["corruption", "paper condition", "Δ supervised", "Δ SimCLR"]
    assert [list(r.values()) for r in imagenet] == [
        ["downsample:factor=4,size=224", "resize + 4x downsample", "-0.360 (paper ≈-0.340, diff -0.020)"]]
    assert "Hurts SimCLR most: `downsample:factor=4,size=32` (Δ -0.230)." in sec
    assert "Clean top-1: supervised 0.920, SimCLR 0.780." in sec
    assert any("Fig. 4 digits 1200 -> digits (all labels): no result for supervised pretrained with salt_pepper:p=0.05"
               in p for p in problems(md, "missing"))
    assert "under the same corruption: **holds** (3/3" in sec
    assert "is a downsampling (resolution is critical): **holds** (1/1" in sec
    assert "a stronger downsampling factor hurts SimCLR more: **holds** (1/1; " not in sec   # no failure list
    assert "a stronger downsampling factor hurts SimCLR more: **holds** (1/1)" in sec


def test_fig5_levels_ordered_coarse_to_fine_with_paper(built):
    md = built[3]
    digits, inat = tables(section(md, "Fig. 5"))
    assert [list(r.values()) for r in digits] == [["half", "0.950", "0.970", "+0.020"],
                                                  ["digit", "0.780", "0.920", "+0.140"]]
    assert [list(r.values()) for r in inat] == [["kingdom", "0.970 (paper ≈0.976, diff -0.006)"],
                                                ["genus", "0.500 (paper ≈0.589, diff -0.089)"],
                                                ["species", "0.450 (paper ≈0.503, diff -0.053)"]]
    assert any("Fig. 5 iNat21 -> iNat21: no result for hierarchical evaluation of supervised" in p
               for p in problems(md, "missing"))
    assert "larger at the finest level than at the coarsest: **holds** (1/1" in section(md, "Fig. 5")


def test_fig3_baselines_and_appendix(built):
    md = built[3]
    digits, inat = tables(section(md, "Fig. 3"))
    # every label budget of the setting; "supervised from scratch" on the same labels is the paper's Fig. 3 row
    assert [list(r.values()) for r in digits] == [["supervised from scratch", "0.400", "0.800", "0.900"],
                                                  ["supervised (linear probe)", "–", "–", "0.920"],
                                                  ["SimCLR (linear probe)", "0.630", "0.740", "0.780"]]
    assert [list(r.values()) for r in inat] == [["supervised (linear probe)", "0.800"],      # Fig. 3 has no such cell
                                                ["SimCLR (linear probe)", "0.500 (paper 0.493, diff +0.007)"]]
    assert "at the largest label budget, supervised training from scratch beats every self-supervised method's " \
           "linear probe: **holds** (2/2)" in section(md, "Fig. 3")
    rnd, knn = tables(section(md, "Baselines"))
    assert [list(r.values()) for r in rnd] == [["knn", "digits", "all", "0.300", "1200: 0.820 (2 seeds)", "+0.520"],
                                               ["linear", "digits", "500", "0.210", "1200: 0.740", "+0.530"]]
    assert {r["backbone"]: r["kNN top-1"] for r in knn} == {"SimCLR digits 1200": "0.820 (2 seeds)",
                                                           "random init (digits)": "0.300"}
    assert "beat an untrained (randomly initialised) backbone: **holds** (2/2)" in md
    (appendix,) = tables(section(md, "All results"))
    assert len(appendix) == len(built[4].collection.cells) == 46     # 49 files: 3 pairs share a cell


def test_problems_section_lists_each_unusable_file(built):
    md = built[3]
    assert any("broken/results.json: not valid JSON" in p for p in problems(md, "unreadable"))
    assert any("future/results.json: unknown results schema 'ffcv-ssl/results/2'" in p
               for p in problems(md, "unknown-schema"))
    assert any("invalid/results.json" in p and "top1" in p for p in problems(md, "invalid"))
    (conflict,) = problems(md, "conflict")
    assert "again/600_500/results.json (top1=0.7200)" in conflict and "run004/results.json (top1=0.7000)" in conflict
    (dup,) = problems(md, "duplicate")
    assert "random/a/results.json" in dup and "random/b/results.json" in dup and "counted once" in dup


def test_summary_lists_every_tested_claim_once(built):
    md, rep = built[3], built[4]
    summary = section(md, "Does the paper's direction hold?")
    lines = [l for l in summary.splitlines() if l.startswith("- [")]
    assert len(lines) == sum(len(s.claims) for s in rep.sections) == 16
    assert "- [Fig. 2] more pretraining images give higher linear top-1 (largest vs smallest pretraining set): " \
           "**holds** (1/1)" in summary


# ---------------------------------------------------------------- figures: plotted data and files
def lines_by_label(ax):
    return {l.get_label(): l for l in ax.get_lines()}


def test_fig2_figure_data(built):
    rep = built[4]
    figs = {f.name: f for f in rep.section("fig2").figures}
    assert set(figs) == {"fig2_linear_digits.png", "fig2_finetune_digits.png"}
    ax = figs["fig2_linear_digits.png"].figure.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "labelled images" and ax.get_ylabel() == "top-1"
    lines = lines_by_label(ax)
    assert set(lines) == {"SimCLR 300", "SimCLR 600", "SimCLR 1200", SCRATCH_LABEL}
    assert list(lines["SimCLR 300"].get_xdata()) == [100, 500]
    assert list(lines["SimCLR 300"].get_ydata()) == [0.52, 0.61]
    assert list(lines["SimCLR 600"].get_xdata()) == [100]            # the conflicting cell is not drawn
    assert list(lines["SimCLR 1200"].get_xdata()) == [100, 500, 1437]  # "all" at extra.n_train
    assert list(lines["SimCLR 1200"].get_ydata()) == [0.63, 0.74, 0.78]
    assert lines[SCRATCH_LABEL].get_linestyle() == "--" and lines["SimCLR 300"].get_linestyle() == "-"
    assert list(lines[SCRATCH_LABEL].get_ydata()) == [0.40, 0.80, 0.90]


def test_fig4_figure_data(built):
    rep = built[4]
    figs = {f.name: f for f in rep.section("fig4").figures}
    assert set(figs) == {"fig4_digits_1200_digits_all.png", "fig4_imagenet_1M_imagenet_all.png"}
    ax = figs["fig4_digits_1200_digits_all.png"].figure.axes[0]
    bars = {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers}
    assert set(bars) == {"supervised", "SimCLR"}
    assert math.isnan(bars["supervised"][0])
    assert bars["supervised"][1:] == pytest.approx([-0.01, -0.02, -0.06])
    assert bars["SimCLR"] == pytest.approx([-0.01, -0.03, -0.08, -0.23])
    assert [t.get_text().splitlines()[0] for t in ax.get_xticklabels()] == [
        "salt & pepper", "JPEG", "resize + 2x downsample", "resize + 4x downsample"]
    ax = figs["fig4_imagenet_1M_imagenet_all.png"].figure.axes[0]
    assert list(lines_by_label(ax)[PAPER_LABEL].get_ydata()) == [-0.34]
    assert [p.get_height() for p in ax.containers[0].patches] == pytest.approx([-0.36])


def test_fig5_figure_data(built):
    rep = built[4]
    figs = {f.name: f.figure.axes[0] for f in rep.section("fig5").figures}
    ax = figs["fig5_digits_1200_digits_all.png"]
    lines = lines_by_label(ax)
    assert list(lines["SimCLR"].get_ydata()) == [0.95, 0.78] and list(lines["supervised"].get_ydata()) == [0.97, 0.92]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["half", "digit"]
    ax = figs["fig5_inat21_1M_inat21_all.png"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["kingdom", "genus", "species"]
    paper = lines_by_label(ax)[PAPER_LABEL]
    assert list(paper.get_xdata()) == [0, 1, 2] and list(paper.get_ydata()) == [0.976, 0.589, 0.503]


def test_figure_files_are_real_pngs_linked_from_the_report(built):
    from PIL import Image

    _, out, _, md, rep = built
    names = [f.name for s in rep.sections for f in s.figures]
    assert len(names) == 6
    for name in names:
        path = out / name
        assert path.stat().st_size > 5000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as im:
            assert im.width > 300 and im.height > 200
        assert f"]({name})" in md
    assert not list(out.glob(".*tmp*"))


# ---------------------------------------------------------------- sections absent without their data
def test_sections_absent_when_their_results_are_absent(tmp_path):
    r = Runs(tmp_path / "runs")
    r.add(0.30, "knn", "random", "digits", None, "digits", None)
    r.add(0.80, "knn", "simclr", "digits", 1200, "digits", None)
    md = report(tmp_path / "runs", tmp_path / "out").read_text(encoding="utf-8")
    titles = re.findall(r"^## (.*)$", md, flags=re.M)
    assert titles == ["Does the paper's direction hold?", "Baselines: untrained backbone and kNN", "Problems",
                      "All results"]
    assert "None: every results file was read" in md
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.md"]


def test_empty_runs_folder_reports_the_problem(tmp_path):
    (tmp_path / "runs").mkdir()
    md = report(tmp_path / "runs", tmp_path / "out").read_text(encoding="utf-8")
    assert "no results.json files found" in md and "No finding of the paper can be tested" in md
    assert "## All results" not in md


# ---------------------------------------------------------------- paper values
def test_paper_values_file_sources_and_claims():
    book = load_paper_values()
    raw = yaml.safe_load(PAPER_VALUES.read_text())
    assert set(book.claims) == set(CLAIMS)                  # every finding has a checker and a text
    counts = {}
    for v in book.values:
        counts[v.table] = counts.get(v.table, 0) + 1
        assert v.source.startswith(("Fig.", "Table")) and isinstance(v.read_off_figure, bool)
        assert v.read_off_figure == v.source.startswith("Fig.")
        assert v.tolerance == (0.01 if v.read_off_figure else 0.0005)
    # every number of the paper that a sweep produces: Fig. 2a 3 datasets x (5 sizes + scratch) x 6
    # budgets + Fig. 2b 3 x 2 x 6; Table 1 4 x 4 + 4; Table 2 4 pools x 3 + 2 x 3; Table 3 3 gains; Fig. 3 4 x 6;
    # Fig. 4 5 x 2; Fig. 5 iNat21 2 x 7, ImageNet 2 x 6, Places365 2 x 3
    assert counts == {"fig2": 108 + 36, "table1": 20, "table2": 18, "table3": 3, "fig3": 24, "fig4": 10, "fig5": 32}
    assert len(raw["values"]) == 251
    # spot checks against the paper's Table 1 and Fig. 2a
    assert book.find("table1", kind="linear", method="supervised", dataset="glc20", size=1_000_000, corruption="none",
                     pool=(), eval_dataset="glc20", budget=None).value == 0.826
    assert book.find("fig2", kind="scratch", method="none", dataset="", size=None, corruption="none", pool=(),
                     eval_dataset="imagenet", budget=1_000_000).value == 0.726
    assert book.find("fig4", metric="delta_top1", kind="linear", method="simclr", dataset="imagenet", size=None,
                     corruption="downsample_2x", pool=(), eval_dataset="imagenet", budget=None).value == -0.154
    # Fig. 4's dataset is one of the paper's four (UNCONFIRMED which), never a miniature; any protocol of probe
    assert book.find("fig4", metric="delta_top1", kind="reference_linear", method="simclr", dataset="inat21",
                     size=1_000_000, corruption="downsample_2x", pool=(), eval_dataset="inat21", budget=None)
    assert book.find("fig4", metric="delta_top1", kind="linear", method="simclr", dataset="digits", size=1200,
                     corruption="downsample_2x", pool=(), eval_dataset="digits", budget=None) is None
    assert book.find("table2", kind="linear", method="simclr", dataset="pool", size=1_000_000, corruption="none",
                     pool=("places365", "inat21", "imagenet", "glc20"), eval_dataset="places365",
                     budget=None).value == 0.482
    assert book.find("table1", kind="linear", method="simclr", dataset="digits", size=1_000_000, corruption="none",
                     pool=(), eval_dataset="digits", budget=None) is None
    assert book.hierarchies["inat21"] == ["kingdom", "phylum", "class", "order", "family", "genus", "species"]


def test_paper_values_bad_file_is_one_line_error(tmp_path):
    with pytest.raises(ReportError, match=r"values\[1\] repeats values\[0\]"):
        entry = {"table": "fig2", "metric": "top1", "value": 0.5, "source": "Fig. 2", "read_off_figure": True,
                 "cell": {"kind": "linear"}}
        parse_paper_values({"values": [entry, dict(entry)]})
    with pytest.raises(ReportError, match=r"values\[0\]: unknown field\(s\) valeu"):
        parse_paper_values({"values": [{"valeu": 1}]})
    bad = tmp_path / "p.yaml"
    bad.write_text("values: [")
    with pytest.raises(ReportError, match="not valid YAML"):
        load_paper_values(bad)


def test_corruption_strings_map_to_the_papers_conditions():
    assert paper_condition("salt_pepper:p=0.1") == "salt_pepper"
    assert paper_condition("jpeg:quality=10") == "jpeg"
    assert paper_condition("resize:size=256") == "resize"
    assert paper_condition("downsample:factor=2,size=256") == "downsample_2x"
    assert paper_condition("downsample:factor=4.0,size=256") == "downsample_4x"
    assert paper_condition("downsample:factor=8,size=256") is None
    assert paper_condition("gaussian_blur:sigma=2") is None
    # chains as the writer's canonical text joins them, and the writer's preset names
    assert paper_condition("resize:size=256+downsample:factor=2,size=256") == "downsample_2x"
    assert paper_condition("resize:size=256+jpeg:quality=15") == "jpeg"
    assert paper_condition("jpeg:quality=15+salt_pepper:p=0.1") is None
    assert paper_condition("paper_downsample4x") == "downsample_4x" and paper_condition("none") is None


# ---------------------------------------------------------------- CLI
def test_cli_report_and_one_line_errors(built, tmp_path, capsys):
    runs = built[0]
    assert main(["report", str(runs), "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "report.md" in out and "1 conflict" in out
    assert (tmp_path / "cli" / "report.md").read_text(encoding="utf-8").startswith("# ffcv-ssl report")
    (tmp_path / "afile").write_text("x")
    assert main(["report", str(runs), "--out", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and len([l for l in err.splitlines() if l.strip()]) == 1
    assert (tmp_path / "afile").read_text() == "x"
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- paper fidelity
def test_supervised_reference_values_are_keyed_to_the_full_training_set():
    """Table 1's "Supervised (All Images)" and Fig. 5's supervised model trained on the whole split; a
    faithful run (size = the split's count) gets the paper's value, and none is keyed to 1M images."""
    book = load_paper_values()
    full = dict(kind="linear", method="supervised", dataset="inat21", size=2_686_843, corruption="none", pool=(),
                eval_dataset="inat21", budget=None)
    assert book.find("table1", **full).value == 0.791
    assert book.find("fig5", **{**full, "kind": "hierarchical"}, level="species").value == 0.799
    for v in book.values:
        if dict(v.cell).get("method") == "supervised" and v.table in ("table1", "fig5"):
            assert "size" not in dict(v.cell), v


def test_fig3_supervised_is_training_from_scratch():
    """Fig. 3's supervised bar is supervised training from scratch on the labels, not a probe."""
    book = load_paper_values()
    scratch = dict(kind="scratch", method="none", dataset="", size=None, corruption="none", pool=(),
                   eval_dataset="inat21")
    assert [book.find("fig3", **scratch, budget=b).value for b in (10_000, 1_000_000)] == [0.0, 0.697]
    assert book.find("fig3", kind="linear", method="supervised", dataset="inat21", size=1_000_000, corruption="none",
                     pool=(), eval_dataset="inat21", budget=1_000_000) is None


def test_every_table_names_its_protocol_and_protocols_are_never_mixed(tmp_path):
    """A cached-feature probe and SimCLR's augmented probe of the same backbone are two tables, each
    saying which protocol produced it, and the paper's value stands beside both."""
    r = Runs(tmp_path / "runs")
    cached, sgd = "cached frozen features, L-BFGS", "frozen backbone, augmented inputs, SGD linear head (90 epochs)"
    for src, dst, v in [("inat21", "inat21", 0.48), ("imagenet", "inat21", 0.36), ("imagenet", "imagenet", 0.63),
                        ("inat21", "imagenet", 0.50)]:
        r.add(v, "linear", "simclr", src, 1_000_000, dst, None, protocol=cached)
        r.add(v + 0.01, "reference_linear", "simclr", src, 1_000_000, dst, None, protocol=sgd)
    r.add(0.30, "scratch", "none", "", None, "inat21", 10_000,
          protocol="supervised from scratch on the budget (RRC+flip); recipe: sgd lr 0.1 x batch/256, wd 0.0001")
    for size, v in [(50_000, 0.2), (1_000_000, 0.4)]:
        for b in (10_000, 1_000_000):
            r.add(v + b / 1e7, "reference_linear", "simclr", "inat21", size, "inat21", b, protocol=sgd)
    md = report(tmp_path / "runs", tmp_path / "out").read_text(encoding="utf-8")
    t1 = section(md, "Table 1")
    cached_t, sgd_t = tables(t1)
    assert by_first(cached_t)["iNat21 (1M)"]["iNat21"] == "0.480 (paper 0.493, diff -0.013)"
    assert by_first(sgd_t)["iNat21 (1M)"]["iNat21"] == "0.490 (paper 0.493, diff -0.003)"
    assert f"Protocol: `linear` = {cached}." in t1 and f"Protocol: `reference_linear` = {sgd}." in t1
    assert "SimCLR (linear probe)" in t1 and "SimCLR (reference_linear probe)" in t1
    fig2 = section(md, "Fig. 2")
    assert f"Protocol: `reference_linear` = {sgd}; `scratch` = supervised from scratch on the budget (RRC+flip); " \
           "recipe: sgd lr 0.1 x batch/256, wd 0.0001." in fig2
    (panel,) = tables(fig2)
    assert by_first(panel)["1M"]["SimCLR 1M"] == "0.500 (paper ≈0.413, diff +0.087)"
    for title in ("Table 1", "Fig. 2"):
        for block in re.split(r"\n(?=\*)", section(md, title))[1:]:          # every table is followed by its protocol
            assert "Protocol: `" in block, block[:80]


def _manifest(tmp_path, name, side, classes):
    """A beton's manifest as the writer writes it (a real digits one), with this dataset's name, size and classes."""
    beton = tmp_path / "data" / f"{name}.beton"
    beton.parent.mkdir(exist_ok=True)
    data = json.loads((REPO / "tests" / "fixtures" / "manifests" / "digits_test.manifest.json").read_text())
    span = {"min": side, "mean": float(side), "max": side}
    data.update(dataset=name, num_classes=classes, class_names=[str(c) for c in range(classes)],
                counts_per_class=[1] * classes)
    data["image_stats"].update(stored_height=span, stored_width=span)
    (tmp_path / "data" / f"{name}.manifest.json").write_text(json.dumps(data))
    return str(beton)


def _study(r: Runs, dataset, train, corruption):
    for method, clean, hit in [("simclr", 0.80, 0.05), ("supervised", 0.90, 0.02)]:
        r.add(clean, "linear", method, dataset, 1000, dataset, None, train=train)
        r.add(clean - hit, "linear", method, dataset, 1000, dataset, None, corruption=corruption, train=train)
        r.add(clean, "hierarchical", method, dataset, 1000, dataset, None, train=train,
              levels={"coarse": 0.99, "label": clean - (0.3 if method == "simclr" else 0.0)})


def test_a_miniature_study_shows_what_it_cannot_test_as_not_testable(tmp_path):
    """32-px images with 10 classes cannot test a resolution effect or a fine-grained gap: those findings read
    "not testable here" with the reason, never "holds" or "does not hold"; large images with many classes are judged."""
    r = Runs(tmp_path / "runs")
    _study(r, "digits", _manifest(tmp_path, "digits_train", 32, 10), "downsample:factor=4,size=32")
    md = report(tmp_path / "runs", tmp_path / "out").read_text(encoding="utf-8")
    summary = section(md, "Does the paper's direction hold?")
    lines = [l for l in summary.splitlines() if l.startswith("- [Fig. 4]") or l.startswith("- [Fig. 5]")]
    assert len(lines) == 3                   # simclr_more_sensitive; gap_grows, supervised_wins_finest
    for line in lines:
        assert "**not testable here**" in line and "holds**" not in line, line
    assert "digits images are 32 px; the corruption findings are about resolution and need >= 128 px" in summary
    assert "digits has 10 classes at its finest level; a fine-grained gap needs >= 100" in summary
    assert "What these results can test (from the evaluation betons' manifests): digits: 32 px images, 10 classes" \
        in summary
    assert "Not run in these results" in summary and "in-domain self-supervised pretraining" in summary

    r = Runs(tmp_path / "runs_big")
    _study(r, "imagenet", _manifest(tmp_path, "imagenet_train", 300, 1000), "downsample:factor=4,size=224")
    md = report(tmp_path / "runs_big", tmp_path / "out_big").read_text(encoding="utf-8")
    summary = section(md, "Does the paper's direction hold?")
    assert "**not testable here** (" not in summary and "not testable here:" not in summary
    assert "SimCLR loses more top-1 than supervised pretraining under the same corruption: **holds** (1/1)" in summary
    assert "larger at the finest level than at the coarsest: **holds** (1/1)" in summary


def test_partly_testable_claims_count_only_what_is_testable(tmp_path):
    r = Runs(tmp_path / "runs")
    _study(r, "digits", _manifest(tmp_path, "digits_train", 32, 10), "jpeg:quality=10")
    _study(r, "imagenet", _manifest(tmp_path, "imagenet_train", 300, 1000), "jpeg:quality=10")
    md = report(tmp_path / "runs", tmp_path / "out").read_text(encoding="utf-8")
    line = next(l for l in md.splitlines() if l.startswith("- [Fig. 4] SimCLR loses more"))
    assert "**holds** (1/1; 1 not testable here: digits images are 32 px" in line
