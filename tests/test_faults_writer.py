"""Faults on the writer / beton / reader side: damaged betons, killed writers, OS errors, locks.

Everything here is real: betons written by our writer (and one by ffcv's own), damaged by flipping bytes
in their tables; the CLI in a subprocess; kill -9 and SIGTERM of a real writer process, with psutil
checking that no worker survives; a real full disk (a small tmpfs) and a real read-only mount; real
permission errors (root's DAC override dropped with setpriv).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixtures.datasets import build_imagenet, build_inat21  # noqa: E402

from dataset_writers.errors import BetonError, ImageError, WriterError  # noqa: E402
from dataset_writers.manifest import manifest_path, read_manifest  # noqa: E402
from dataset_writers.records import SplitIndex  # noqa: E402
from dataset_writers.write import ImageOptions, write_split  # noqa: E402
from ffcv_ssl.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "FFCV_SSL_NO_PROGRESS": "1", "PYTHONPATH": str(REPO)}


def run_cli(*args, timeout=300, prefix=()):
    proc = subprocess.run([*prefix, sys.executable, "-m", "ffcv_ssl", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=ENV, cwd=REPO)
    return proc.returncode, proc.stdout, [line for line in proc.stderr.splitlines() if line.strip()]


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def one_error_line(err, *needles):
    assert len(err) == 1, err
    assert err[0].startswith("error:") and "Traceback" not in err[0], err
    for needle in needles:
        assert str(needle) in err[0], (needle, err[0])
    return err[0]


# ---------------------------------------------------------------------------------------------------
# Item 1: every reader validates the header and the tables before compiled code touches the pages

@pytest.fixture(scope="module")
def digits_beton(digits_index, tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "digits.beton"
    write_split(digits_index["test"], out, image=ImageOptions(max_resolution=32), workers=0)
    return out


def damage(src: Path, dst: Path, kind: str) -> Path:
    """A copy of ``src`` (and its manifest) with flipped bytes in one of its tables, or cut in half."""
    from ffcv.reader import Reader
    from ffcv.types import HeaderType

    shutil.copy(src, dst)
    shutil.copy(manifest_path(src), manifest_path(dst))
    r = Reader(str(src))
    data = bytearray(src.read_bytes())
    row = r.metadata_type.itemsize
    image = HeaderType.itemsize + r.field_descriptors.nbytes + r.metadata_type.fields["f0"][1]
    table = int(r.header["alloc_table_ptr"])
    if kind == "pointers":       # one byte of the image pointer of every 7th sample
        for s in range(0, int(r.num_samples), 7):
            data[image + s * row + 5 + 4] ^= 0x10
    elif kind == "table":        # the size of every 5th allocation
        for e in range(0, len(r.alloc_table), 5):
            data[table + e * 24 + 16 + 3] ^= 0xFF
    elif kind == "sizes":        # height and width of sample 5 (inspect --grid tried to allocate ~1 TB)
        data[image + 5 * row + 2] ^= 0xFF
        data[image + 5 * row + 4] ^= 0xFF
    elif kind == "truncated":
        data = data[: len(data) // 2]
    dst.write_bytes(bytes(data))
    return dst


KINDS = ["pointers", "table", "sizes", "truncated"]


@pytest.fixture(scope="module")
def damaged(digits_beton, tmp_path_factory):
    base = tmp_path_factory.mktemp("damaged")
    return {k: damage(digits_beton, base / f"{k}.beton", k) for k in KINDS}


def test_validation_accepts_intact_betons_ours_and_ffcvs(digits_beton, tmp_path):
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    from dataset_writers.beton_check import open_beton

    assert int(open_beton(digits_beton, read_manifest(digits_beton)).num_samples) == 359
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40 + i, 30 + 2 * i, 3), dtype=np.uint8) for i in range(20)]
    theirs = tmp_path / "ffcv.beton"
    DatasetWriter(str(theirs), {"image": RGBImageField(write_mode="smart"), "label": IntField()},
                  num_workers=1).from_indexed_dataset([(im, i) for i, im in enumerate(images)])
    assert int(open_beton(theirs).num_samples) == 20


@pytest.mark.parametrize("kind", KINDS)
def test_inspect_grid_on_a_damaged_beton_is_one_line(damaged, kind, tmp_path):
    code, _, err = run_cli("inspect", damaged[kind], "--grid", tmp_path / "grid.png")
    assert code == 2
    line = one_error_line(err, damaged[kind])
    assert ("truncated" if kind == "truncated" else "damaged") in line
    assert not (tmp_path / "grid.png").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_loader_refuses_a_damaged_beton_before_compiling(damaged, kind):
    from ffcv_ssl.loading.config import ViewConfig
    from ffcv_ssl.loading.loader import ViewLoader

    with pytest.raises(BetonError, match=str(damaged[kind])):
        ViewLoader(str(damaged[kind]), [ViewConfig(size=32)], batch_size=8, num_workers=1)


@pytest.mark.parametrize("kind", ["table", "sizes"])
def test_write_pool_refuses_a_damaged_part(damaged, kind, tmp_path):
    code, _, err = run_cli("write", "pool", "--part", damaged[kind], "--out", tmp_path / "pool.beton")
    assert code == 2
    one_error_line(err, damaged[kind], "damaged")
    assert list(tmp_path.iterdir()) == []


def test_pretrain_on_a_damaged_beton_is_one_line_not_a_crash(damaged, tmp_path):
    code, _, err = run_cli("pretrain", REPO / "configs/pretrain/demo_simclr.yaml", f"data.train={damaged['table']}",
                           f"out_dir={tmp_path / 'run'}", "optim.epochs=1", "optim.warmup_epochs=0",
                           "data.batch_size=64")
    errors = [e for e in err if e.startswith("error:")]
    assert code == 2 and not any("Traceback" in e for e in err), err
    one_error_line(errors, damaged["table"], "damaged")


def test_a_directory_given_as_a_beton_says_so(tmp_path, capsys):
    folder = tmp_path / "data.beton"
    folder.mkdir()
    code, _, err = cli(capsys, "inspect", folder)
    assert code == 2
    one_error_line(err, folder, "is a directory")


# ---------------------------------------------------------------------------------------------------
# Item 2: a killed writer leaves no worker behind; SIGTERM cleans up; stale temporaries are removed

@pytest.fixture(scope="module")
def photos_root(tmp_path_factory):
    """~250 real-photo JPEGs (500 x 375) in ImageNet's train layout: a few seconds to write on an idle machine.

    (~100 photos were written in well under a second on an idle CI machine, so the writer sometimes finished
    before the test could freeze it mid-write.)
    """
    return build_imagenet(tmp_path_factory.mktemp("photos") / "imagenet", "devkit", per_class=50).root


def start_writer(root: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ffcv_ssl", "write", "imagenet", "--root", str(root), "--split",
                             "train", "--out", str(out), "--workers", "2", *extra], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_mid_write(proc: subprocess.Popen, out: Path, timeout: float = 180.0):
    """Freeze the writer (SIGSTOP) once its workers exist and its temporary file is being written.

    Frozen mid-write, it stays mid-write for as long as the test needs, however fast the machine is;
    SIGKILL acts on a stopped process, SIGTERM is delivered at SIGCONT. Returns its worker processes.
    """
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    first_size = None
    while time.monotonic() < deadline:
        kids = parent.children(recursive=True)
        temps = list(out.parent.glob(f".{out.name}.tmp-*"))
        if len(kids) >= 2 and temps:
            try:
                size = temps[0].stat().st_size
            except FileNotFoundError:
                size = None
            if first_size is None:
                first_size = size
            elif size is not None and size > first_size:
                # the temporary grows: the workers are forked and samples are being written (the encoding loop)
                proc.send_signal(signal.SIGSTOP)
                if proc.poll() is not None or out.exists():
                    pytest.fail("the writer finished before it could be frozen mid-write; enlarge photos_root")
                return kids
        if proc.poll() is not None:
            pytest.fail(f"the writer ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.02)
    pytest.fail("the writer never started its workers")


def survivors(kids, wait: float = 20.0):
    """Workers still alive (zombies count as dead) after up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        alive = []
        for k in kids:
            try:
                if k.is_running() and k.status() != psutil.STATUS_ZOMBIE:
                    alive.append(k)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def reap(kids):
    for k in kids:
        try:
            k.kill()
        except psutil.NoSuchProcess:
            pass


def test_kill9_of_the_writer_leaves_no_worker_and_a_rerun_removes_its_temporary(photos_root, tmp_path):
    out = tmp_path / "train.beton"
    proc = start_writer(photos_root, out)
    kids = wait_mid_write(proc, out)
    try:
        proc.kill()
        proc.wait(timeout=60)
        assert survivors(kids) == [], "writer workers outlived a kill -9 of their parent"
    finally:
        reap(kids)
    stale = list(tmp_path.glob(".train.beton.tmp-*"))
    assert stale and not out.exists()                  # a kill -9 cannot clean up; the next write must
    code, _, err = run_cli("write", "imagenet", "--root", photos_root, "--split", "train", "--subset", "8",
                           "--out", out, "--workers", "1")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.beton", "train.manifest.json"]


def test_sigterm_of_the_writer_cleans_up_and_says_so(photos_root, tmp_path):
    out = tmp_path / "train.beton"
    proc = start_writer(photos_root, out)
    kids = wait_mid_write(proc, out)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
        _, stderr = proc.communicate(timeout=120)
        assert survivors(kids) == []
    finally:
        reap(kids)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    one_error_line([e for e in stderr.splitlines() if e.strip()], "terminated", "SIGTERM")
    assert list(tmp_path.iterdir()) == []


def test_a_second_writer_to_the_same_output_fails_at_once(photos_root, tmp_path):
    out = tmp_path / "train.beton"
    proc = start_writer(photos_root, out)
    kids = wait_mid_write(proc, out)
    try:
        for extra in ([], ["--overwrite"]):
            code, _, err = run_cli("write", "imagenet", "--root", photos_root, "--split", "train", "--subset", "8",
                                   "--out", out, "--workers", "1", *extra)
            assert code == 2
            one_error_line(err, out, f"pid {proc.pid}")
            assert proc.poll() is None                     # the first writer goes on undisturbed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
        proc.communicate(timeout=120)
        reap(kids)


def test_stale_feature_cache_temporaries_are_removed(tmp_path):
    from ffcv_ssl.evaluation.cache import FeatureCacheWriter, cache_dir_for, pipeline_tag

    a, b = "a" * 64, "b" * 64
    directory = cache_dir_for(tmp_path, a, b, pipeline_tag({"crop": 224}))
    kwargs = dict(count=4, width=3, checkpoint_sha256=a, beton_sha256=b, arch="resnet18", pipeline={"crop": 224})
    code = ("import os, signal, sys; from pathlib import Path; from ffcv_ssl.evaluation.cache import FeatureCacheWriter;"
            f"FeatureCacheWriter(Path({str(directory)!r}), **{kwargs!r}); os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, timeout=120)
    stale = list(tmp_path.glob(f".{directory.name}.tmp-*"))
    assert len(stale) == 1                                  # what a killed extraction leaves
    live = tmp_path / f".{directory.name}.tmp-{os.getpid()}-0000abcd"   # a live process's: must survive
    live.mkdir()
    with FeatureCacheWriter(directory, **kwargs) as w:
        w.add(np.ones((4, 3)), np.arange(4), np.arange(4))
    assert not stale[0].exists() and live.exists() and (directory / "manifest.json").is_file()


# ---------------------------------------------------------------------------------------------------
# Item 3: OS errors on the writer side are one line naming the path and the fix

def test_full_disk_while_writing_is_one_line_and_leaves_nothing(mount_tmpfs, capsys):
    disk = mount_tmpfs("size=96k")
    out = disk / "digits.beton"
    code, _, err = cli(capsys, "write", "digits", "--split", "train", "--out", out, "--max-resolution", "32",
                       "--workers", "1")
    assert code == 2
    one_error_line(err, out, "no space left")
    assert list(disk.iterdir()) == []


def test_read_only_output_directory_is_one_line(mount_tmpfs, capsys):
    disk = mount_tmpfs("ro,size=64k")
    out = disk / "digits.beton"
    code, _, err = cli(capsys, "write", "digits", "--split", "test", "--out", out, "--workers", "1")
    assert code == 2
    one_error_line(err, disk, "read-only")


def without_dac() -> tuple:
    """A command prefix under which chmod 000 really denies access (root normally overrides it)."""
    if os.geteuid() != 0:
        return ()
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: root bypasses file permissions, so there is no real "
                    "permission error to test")
    drop = "-dac_override,-dac_read_search"
    return ("setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}")


@pytest.fixture(scope="module")
def small_imagenet(tmp_path_factory):
    return build_imagenet(tmp_path_factory.mktemp("small") / "imagenet", "devkit", per_class=2).root


@pytest.fixture
def unreadable(small_imagenet):
    """One class folder and one image of another class made unreadable; restored afterwards."""
    classes = sorted(p for p in (small_imagenet / "train").iterdir() if p.is_dir())
    folder, image = classes[0], sorted(classes[1].glob("*.JPEG"))[0]
    for p in (folder, image):
        p.chmod(0)
    yield folder, image
    folder.chmod(0o755)
    image.chmod(0o644)


def test_unreadable_class_folder_and_image(small_imagenet, unreadable, tmp_path):
    prefix = without_dac()
    folder, image = unreadable
    out = tmp_path / "train.beton"
    args = ("write", "imagenet", "--root", small_imagenet, "--split", "train", "--out", out, "--workers", "1")
    code, _, err = run_cli(*args, prefix=prefix)
    assert code == 2
    line = one_error_line(err, folder, "permission denied")
    assert "cannot decode" not in line and list(tmp_path.iterdir()) == []
    code, _, err = run_cli(*args, "--on-error", "skip", prefix=prefix)
    assert code == 0, err
    skipped = {s.file: s.reason for s in read_manifest(out).skipped}
    assert "permission denied" in skipped[str(folder)]
    assert "permission denied" in skipped[str(image)] and "cannot decode" not in skipped[str(image)]


def test_unreadable_folder_of_an_annotated_dataset_lists_its_images(tmp_path):
    """iNat21 lists files in a JSON: an unreadable folder's images are 'permission denied', not 'not found'."""
    prefix = without_dac()
    fx = build_inat21(tmp_path / "inat21")
    folder = sorted(p for p in (fx.root / "val").iterdir() if p.is_dir())[0]
    inside = sorted(str(f) for f in folder.iterdir())
    folder.chmod(0)
    try:
        out = tmp_path / "val.beton"
        code, _, err = run_cli("write", "inat21", "--root", fx.root, "--split", "val", "--out", out, "--workers", "1",
                               "--on-error", "skip", prefix=prefix)
    finally:
        folder.chmod(0o755)
    assert code == 0, err
    skipped = {s.file: s.reason for s in read_manifest(out).skipped}
    assert sorted(skipped) == inside and all("permission denied" in r for r in skipped.values()), skipped


# ---------------------------------------------------------------------------------------------------
# Item 7: smaller ones

def test_negative_workers_are_rejected(capsys, tmp_path):
    code, _, err = cli(capsys, "write", "digits", "--split", "test", "--out", tmp_path / "d.beton", "--workers", "-3")
    assert code == 2
    one_error_line(err, "--workers -3")
    assert list(tmp_path.iterdir()) == []


class TwoBad:
    """Real pixels, two unreadable positions."""

    def __init__(self, n=200):
        self.images = np.random.default_rng(0).integers(0, 256, (n, 24, 20, 3), dtype=np.uint8)

    def load(self, pos, draft_max_side=None):
        if pos in (40, 90):
            raise ImageError(f"/data/img_{pos}.jpg", "cannot decode (truncated)")
        return self.images[pos]

    def describe(self, pos):
        return f"/data/img_{pos}.jpg"


@pytest.mark.parametrize("workers", [0, 2])
def test_fail_mode_counts_the_other_bad_images(tmp_path, workers):
    index = SplitIndex("toy", "train", np.arange(200), np.arange(200) % 3, ["a", "b", "c"], TwoBad())
    with pytest.raises(WriterError, match=r"/data/img_40.jpg: cannot decode \(truncated\) \(and 1 more"):
        write_split(index, tmp_path / "toy.beton", image=ImageOptions(max_resolution=32), workers=workers)
    assert list(tmp_path.iterdir()) == []


def test_an_orphan_manifest_is_reported_and_replaced(digits_index, tmp_path, capsys):
    out = tmp_path / "d.beton"
    manifest_path(out).write_text(json.dumps({"schema": "ffcv-ssl/manifest/1", "num_samples": 3}))
    code, _, err = cli(capsys, "write", "digits", "--split", "test", "--out", out, "--max-resolution", "32",
                       "--workers", "1")
    assert code == 0
    assert len(err) == 1 and err[0].startswith("warning:") and str(manifest_path(out)) in err[0] and "orphan" in err[0]
    assert read_manifest(out).num_samples == 359


def test_a_small_beton_is_small_and_loads_with_both_caches(digits_index, tmp_path):
    from ffcv.fields.decoders import SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption

    from ffcv_ssl.loading.config import ViewConfig
    from ffcv_ssl.loading.loader import ViewLoader

    index = digits_index["test"]
    out = tmp_path / "fifteen.beton"
    m = write_split(index, out, positions=np.arange(15), image=ImageOptions(write_mode="raw"), workers=0)
    # was 16 MiB for any size (the metadata padded to a page, the last page padded to its end)
    assert out.stat().st_size < 1 << 20, out.stat().st_size
    assert m.num_samples == 15
    for os_cache in (True, False):
        loader = Loader(str(out), batch_size=15, num_workers=1, order=OrderOption.SEQUENTIAL, os_cache=os_cache,
                        pipelines={"image": [SimpleRGBImageDecoder()]})
        got = dict(zip(loader.pipeline_specs, next(iter(loader))))["image"]
        np.testing.assert_array_equal(got, index.source.images[:15])
        views = ViewLoader(str(out), [ViewConfig(size=16, crop="full")], batch_size=5, num_workers=1,
                           order="sequential", os_cache=os_cache)
        batches = list(views)
        assert len(batches) == 3 and tuple(batches[0].views[0].shape) == (5, 3, 16, 16)
