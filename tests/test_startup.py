"""Start-up costs paid by every process: importing ffcv must not recompile numba's typed dict each time."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
import ffcv_ssl
from ffcv_ssl import ffcv_compat
hooked = ffcv_compat._FINDER in sys.meta_path
import ffcv.fields.rgb_image                      # builds ffcv's numba typed Dict at import
from numba.typed import typeddict
print(hooked, ffcv_compat._FINDER in sys.meta_path, type(typeddict._setitem._cache).__name__,
      type(typeddict._make_dict._cache).__name__, dict(ffcv.fields.rgb_image.IMAGE_MODES))
"""


def test_importing_ffcv_through_ffcv_ssl_caches_its_typed_dict_compile():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    hooked, still_hooked, setitem_cache, make_cache, modes = out.stdout.strip().split(" ", 4)
    assert hooked == "True" and still_hooked == "False"          # installed by the package, fired once
    assert setitem_cache == make_cache == "FunctionCache"         # numba's on-disk cache, not NullCache
    assert modes == "{'jpg': 0, 'raw': 1}"                         # ffcv's table is intact


def test_hook_does_nothing_when_ffcv_was_imported_first():
    probe = ("import ffcv.fields.rgb_image, sys; import ffcv_ssl; from ffcv_ssl import ffcv_compat; "
             "print(ffcv_compat._FINDER in sys.meta_path)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
