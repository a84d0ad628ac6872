"""The corruption-spec parser loads without ffcv, cv2 or torch, so the report can use it.

Before, the report kept its own copy of the parser; now it reads corruption text with the writers' parser,
so both agree on presets, defaults and canonical form.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

POISON = "import sys\nfor m in ('cv2', 'ffcv', 'torch', 'torchvision', 'timm'):\n    sys.modules[m] = None\n"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", POISON + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_spec_parser_imports_without_ffcv_cv2_torch():
    proc = _run("""
        from dataset_writers.corruptions.spec import parse_corruptions
        print('+'.join(s.describe() for s in parse_corruptions('paper_downsample4x')))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "downsample:factor=4,size=256"


def test_report_reads_corruptions_with_the_writers_parser_without_heavy_imports():
    proc = _run("""
        from ffcv_ssl.report.experiments import corruption_steps, downsample_factor, paper_condition
        print(paper_condition('paper_downsample4x'), paper_condition('resize:size=256+jpeg:quality=15'),
              downsample_factor('resize:size=256+downsample:factor=2,size=256'), corruption_steps('none'),
              paper_condition('resize:size=256+some_future_corruption:x=1'))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["downsample_4x", "jpeg", "2.0", "[]", "None"]


def test_report_steps_are_the_parsers_specs():
    from dataset_writers.corruptions import parse_corruptions
    from ffcv_ssl.report.experiments import corruption_steps

    text = "resize:size=256+paper_jpeg"
    assert corruption_steps(text) == [(s.name, s.params.as_dict()) for s in parse_corruptions(text)]
    assert corruption_steps(text)[1] == ("jpeg", {"quality": 15})
