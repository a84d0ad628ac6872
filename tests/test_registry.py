"""The one registry helper (``ffcv_ssl.registry``) and the real registries built on it.

A built-in module that fails to import must surface (a wheel missing a module would otherwise lose a command
or a dataset silently), a name registered twice is an error, and an unknown name is one line with the
closest name and every known one.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ffcv_ssl.errors import ConfigError, UserError
from ffcv_ssl.registry import Registry


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("poisoned, code", [
    # the CLI: a command module that cannot be imported must not just vanish from --help
    ("ffcv_ssl.commands.demo", "from ffcv_ssl.cli import build_parser; build_parser()"),
    # the writers: one broken reader module must not go unnoticed while another dataset is looked up
    ("dataset_writers.readers.glc20", "from dataset_writers.registry import get_reader; get_reader('digits')"),
    ("ffcv_ssl.bench.train", "from ffcv_ssl.bench import load_benches; load_benches()"),
])
def test_builtin_module_import_error_surfaces(poisoned, code):
    # sys.modules[name] = None makes importing ``name`` raise ModuleNotFoundError (name=``name``): exactly
    # what a module missing from an install does.
    proc = _run(f"import sys; sys.modules[{poisoned!r}] = None\n{code}\nprint('NO ERROR')")
    assert proc.returncode != 0 and "NO ERROR" not in proc.stdout, proc.stdout + proc.stderr
    assert "ModuleNotFoundError" in proc.stderr and poisoned in proc.stderr


def test_builtin_import_error_surfaces_in_helper(tmp_path, monkeypatch):
    pkg = tmp_path / "regpkg_broken"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text("from regpkg_broken import REG\nREG.register('good', 1)\n")
    (pkg / "bad.py").write_text("import a_module_that_does_not_exist_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import regpkg_broken

    reg = Registry("thing", package="regpkg_broken", builtins=("good", "bad"))
    regpkg_broken.REG = reg
    with pytest.raises(ModuleNotFoundError, match="a_module_that_does_not_exist_anywhere"):
        reg.lookup("good")
    with pytest.raises(ModuleNotFoundError):     # and again: a failed load is not remembered as done
        list(reg)


def test_builtin_module_that_registers_nothing_is_an_error(tmp_path, monkeypatch):
    pkg = tmp_path / "regpkg_silent"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "quiet.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("thing", package="regpkg_silent", builtins=("quiet",))
    with pytest.raises(ImportError, match="built-in thing quiet not registered by regpkg_silent.quiet"):
        reg.load()


def test_duplicate_registration_is_an_error():
    reg: Registry[object] = Registry("widget")

    @reg.register("a")
    def first():
        pass

    reg.register("a", first)                     # the same object again (a re-import) is fine
    with pytest.raises(ValueError, match=r"widget 'a' is registered twice: by .*first and by .*second"):
        @reg.register("a")
        def second():
            pass
    assert reg["a"] is first


def test_duplicate_evaluation_kind_is_an_error():
    from ffcv_ssl.evaluation.runner import register_evaluation

    with pytest.raises(ValueError, match="evaluation 'linear' is registered twice"):
        register_evaluation("linear")(lambda cfg, source, space: [])


def test_duplicate_reader_is_an_error():
    from dataset_writers.registry import get_reader, register_reader

    digits = get_reader("digits")
    with pytest.raises(ValueError, match="dataset 'digits' is registered twice"):
        register_reader("digits", splits=("train",), options=digits.options)(lambda root, split, options: None)


def test_unknown_name_lists_known_ones_and_the_closest():
    reg = Registry("colour", builtins=(), error=ConfigError, key="paint.colour")
    reg.register("red", 1)
    reg.register("green", 2)
    with pytest.raises(ConfigError) as err:
        reg.lookup("gren")
    assert str(err.value) == "unknown colour 'gren' (paint.colour); did you mean 'green'? (known: green, red)"


def test_unknown_real_names_are_one_line_with_known_ones():
    from dataset_writers.registry import get_reader
    from ffcv_ssl.evaluation.kinds import EVALUATIONS, KINDS

    with pytest.raises(UserError) as err:
        get_reader("imagenett")
    msg = str(err.value)
    assert "did you mean 'imagenet'" in msg and "digits" in msg and "glc20" in msg and "\n" not in msg
    with pytest.raises(UserError) as err:
        EVALUATIONS.check("lineer")
    msg = str(err.value)
    assert "did you mean 'linear'" in msg and all(k in msg for k in KINDS) and "\n" not in msg


def test_evaluation_kinds_come_from_the_registry():
    """The kinds the config, the sweeps and the CLI accept are exactly the evaluations ``run_eval`` can run."""
    from ffcv_ssl.evaluation.kinds import EVALUATIONS, KINDS
    from ffcv_ssl.evaluation import runner

    assert set(KINDS) == set(EVALUATIONS) == {"linear", "knn", "hierarchical", "concat", "finetune", "scratch",
                                              "reference_linear"}
    assert EVALUATIONS["knn"] is runner.eval_knn


def test_names_do_not_import_builtins(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("thing", package="regpkg_never_made", builtins={"x": "mod_x"})
    assert reg.names() == ["x"]
    reg.check("x")                                # a declared name validates without importing its module
    assert "regpkg_never_made" not in sys.modules


def test_cli_help_lists_eval_kinds_without_heavy_imports():
    """The eval kinds shown by ``ffcv-ssl eval --help`` come from the registry's declaration, which must stay
    light: building the parser imports none of torch, ffcv, cv2 (an eager import there costs seconds)."""
    proc = _run("""
        import sys
        from ffcv_ssl.cli import build_parser
        from ffcv_ssl.evaluation.kinds import KINDS
        parser = build_parser()
        sub = next(a for a in parser._actions if a.dest == 'command').choices['eval']
        kind_help = next(a for a in sub._actions if a.dest == 'kind').help
        assert all(k in kind_help for k in KINDS), kind_help
        print(sorted(m for m in ('torch', 'ffcv', 'cv2', 'numba') if m in sys.modules))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
