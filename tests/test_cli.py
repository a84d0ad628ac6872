"""The CLI: every subcommand's --help builds; user errors are one red line and exit code 2."""
import subprocess
import sys

import pytest

from ffcv_ssl.cli import build_parser, main
from ffcv_ssl.commands import COMMANDS


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ffcv_ssl", *args], capture_output=True, text=True, cwd=cwd,
                          env={**__import__("os").environ, "COLUMNS": "200"}, timeout=600)


def test_help_lists_the_workflow_and_each_subcommand_help_builds(capsys):
    build_parser()
    assert "demo" in COMMANDS
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert f"ffcv-ssl {name}" in out and len(out.splitlines()) >= 3


def test_python_m_and_version():
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("ffcv-ssl ")


def test_demo_out_is_a_file_one_line_exit_2(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("not a directory")
    res = run_cli("demo", "--out", str(target))
    assert res.returncode == 2
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "is a file, not a directory" in lines[0] and str(target) in lines[0]
    assert "Traceback" not in res.stderr
    assert target.read_text() == "not a directory"


def test_unknown_config_key_and_wrong_type_exit_2(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "o"), "image_sise=48"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'image_sise'" in err and "did you mean 'image_size'" in err
    assert main(["demo", "--out", str(tmp_path / "o"), "image_size=big"]) == 2
    assert "expected int" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()   # nothing is created before the config is valid


def test_missing_config_file_exit_2(tmp_path, capsys):
    assert main(["demo", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_argument_is_one_line_exit_2():
    res = run_cli("demo", "--no-such-flag")
    assert res.returncode == 2
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "unrecognized arguments: --no-such-flag" in lines[0]


def test_debug_shows_the_traceback(tmp_path):
    target = tmp_path / "f"
    target.write_text("x")
    res = run_cli("--debug", "demo", "--out", str(target))
    assert res.returncode != 0 and "Traceback" in res.stderr and "UserError" in res.stderr


@pytest.mark.parametrize("argv", [
    ["imagenet", "--root", "/data/in", "--split", "val", "val_layout=kaggle", "--out", "o.beton", "--corrupt",
     "paper_jpeg", "--corrupt", "jpeg:quality=10", "--subset", "500", "--workers", "1", "--max-resolution", "64"],
    ["pool", "--part", "a.beton:250k", "b.beton", "--part", "c.beton", "--out", "p.beton", "--balanced",
     "--verify-parts", "--overwrite"],
])
def test_sweep_write_stages_parse_with_the_cli_grammar(argv):
    """``parse_write_argv`` (sweep write stages) and ``ffcv-ssl write`` give the same ``WriteConfig``."""
    from ffcv_ssl.commands.write import parse_write_argv, write_config

    cfg = parse_write_argv(argv)
    assert cfg == write_config(build_parser().parse_args(["write", *argv]))
    assert cfg.out == argv[argv.index("--out") + 1] and cfg.dataset == argv[0]
    assert cfg.parts == ([] if argv[0] != "pool" else ["a.beton:250k", "b.beton", "c.beton"])
