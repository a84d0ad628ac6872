"""``ffcv-ssl report --paper-self-check``: the paper's own values, fed in as results, pass every direction check
and are each shown beside a result; a deliberately wrong value makes it fail."""
from pathlib import Path

import pytest
import yaml

from ffcv_ssl.cli import main
from ffcv_ssl.report import load_paper_values
from ffcv_ssl.report.paper import PAPER_VALUES
from ffcv_ssl.report.self_check import paper_results, run_self_check


def _edit(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(PAPER_VALUES.read_text())
    change(data)
    path = tmp_path / "paper_values.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _value(data, table, **cell):
    hits = [v for v in data["values"] if v["table"] == table and all(v["cell"].get(k) == x for k, x in cell.items())]
    assert len(hits) == 1, (table, cell, len(hits))
    return hits[0]


def test_cli_self_check_passes_on_the_papers_values(tmp_path, capsys):
    assert main(["report", "--paper-self-check", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "paper self-check passed" in out and "FAILS" not in out and "NOT SHOWN" not in out
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    # every check of the paper's lenses is tested on the paper's numbers, none is left out
    for claim in ("concatenating two self-supervised representations", "adding supervised features",
                  "a pool of four datasets is below", "in-domain self-supervised pretraining beats",
                  "supervised training from scratch beats every self-supervised", "fine-tuning from SimCLR beats"):
        line = next(l for l in md.splitlines() if l.startswith("- [") and claim in l)
        assert "**holds**" in line, line


def test_every_paper_value_is_shown_and_every_claim_holds():
    check = run_self_check(load_paper_values())
    assert check.failures == [] and check.unshown == [] and check.disagreements == []
    assert len(check.report.paper.values) == 251
    assert {c.claim.id for c in check.report.claims} >= {
        "quantity.more_data_helps", "quantity.diminishing_returns", "quantity.linear_below_scratch",
        "quantity.finetune_beats_scratch_few_labels", "quantity.finetune_meets_scratch_many_labels",
        "methods.supervised_beats_ssl", "domain.in_domain_best", "pooling.below_same_size_in_domain",
        "pooling.below_own_share", "concat.ssl_pair_redundant", "concat.supervised_complements",
        "quality.simclr_more_sensitive", "quality.downsampling_hurts_simclr_most",
        "quality.stronger_downsampling_hurts_more", "granularity.gap_grows", "granularity.supervised_wins_finest"}


def test_a_wrong_in_domain_value_fails_the_self_check(tmp_path, capsys):
    def wrong(data):      # iNat21 SimCLR in-domain below ImageNet SimCLR on iNat21 (0.373): Table 1's finding breaks
        _value(data, "table1", method="simclr", dataset="inat21", eval_dataset="inat21")["value"] = 0.2
    assert main(["report", "--paper-self-check", "--paper-values", str(_edit(tmp_path, wrong))]) == 1
    out = capsys.readouterr().out
    assert "paper self-check failed" in out
    assert "FAILS on the paper's own values: [Table 1] in-domain self-supervised" in out
    assert "(in-domain 0.200 vs ImageNet 0.373)" in out


def test_a_value_no_table_shows_fails_the_self_check(tmp_path, capsys):
    def orphan(data):     # keyed to a cell no experiment has (a budget of 7 labels): never beside a result
        _value(data, "fig2", kind="scratch", eval_dataset="imagenet", budget=10000)["cell"]["level"] = "genus"
    assert main(["report", "--paper-self-check", "--paper-values", str(_edit(tmp_path, orphan))]) == 1
    assert "NOT SHOWN beside any result: fig2" in capsys.readouterr().out


def test_self_check_takes_no_runs_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--paper-self-check"]) == 2
    assert "not a runs folder" in capsys.readouterr().err


def test_the_old_checks_fail_on_the_papers_values():
    """Why the self-check exists: the paper's own numbers, judged by three earlier direction checks, fail them."""
    book = load_paper_values()
    results, _ = paper_results(book)
    by = {}
    for r in results:
        by[(r.pretrain.method, r.pretrain.dataset, r.pretrain.size, r.pretrain.corruption, tuple(r.pretrain.pool),
            tuple(c.method for c in r.concat), r.eval.dataset, r.eval.budget)] = r.metrics["top1"]
    # concatenation: "< 1 pt gain" fails on iNat21 (+1.4)
    alone = by[("simclr", "inat21", 1_000_000, "none", (), (), "inat21", None)]
    gain = by[("simclr", "inat21", 1_000_000, "none", (), ("simclr",), "inat21", None)] - alone
    assert gain == pytest.approx(0.014) and not gain < 0.01
    # own share on a 2-way pool: ImageNet+Places365 on Places365 is above in-domain 250k
    pooled = by[("simclr", "pool", 500_000, "none", ("imagenet", "places365"), (), "places365", None)]
    assert pooled > by[("simclr", "places365", 250_000, "none", (), (), "places365", None)]
    # Fig. 3 at 10k labels: scratch (0.0) is below every method, so "supervised beats SSL" holds only at the top
    assert by[("none", "", None, "none", (), (), "inat21", 10_000)] < \
        by[("byol", "inat21", 1_000_000, "none", (), (), "inat21", 10_000)]
