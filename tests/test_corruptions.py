"""Corruption registry: statistics on real photographs, exact references, determinism, spec parsing."""
from __future__ import annotations

import io
import multiprocessing as mp
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_writers.corruptions import (CORRUPTIONS, PAPER_CONDITIONS, PRESETS, CorruptionChain, get_corruption,
                                         label_noise_record, make_spec, parse_corruption, parse_corruptions)
from dataset_writers.corruptions.labels import stable_hash64, uniforms
from dataset_writers.corruptions.pixels import gaussian_radius, shorter_side_size
from dataset_writers.errors import WriterError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "corruptions.md"
PIXEL_KINDS = sorted(n for n, c in CORRUPTIONS.items() if c.kind == "pixel")


@pytest.fixture(scope="module")
def photos():
    """Four real photographs of different sizes and aspect ratios (shipped with scikit-image / scikit-learn)."""
    from skimage import data
    from sklearn.datasets import load_sample_image

    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
            "china": load_sample_image("china.jpg")}


def run(spec: str, image: np.ndarray, sample_id: int = 0, seed: int = 0) -> np.ndarray:
    return CorruptionChain.build(spec, seed)(image, sample_id)


def binomial_ok(count: float, n: int, p: float, z: float = 5.0) -> bool:
    return abs(count - n * p) <= z * np.sqrt(n * p * (1 - p)) + 1


# --------------------------------------------------------------------------------------------- registry
def test_registry_has_the_paper_corruptions_and_presets():
    assert {"salt_pepper", "jpeg", "resize", "downsample", "gaussian_blur", "gaussian_noise",
            "label_noise"} <= set(CORRUPTIONS)
    assert get_corruption("label_noise").kind == "label"
    assert PAPER_CONDITIONS == ("paper_salt_pepper", "paper_jpeg", "paper_resize", "paper_downsample2x",
                                "paper_downsample4x")
    chains = {name: CorruptionChain.build(name).describe() for name in PAPER_CONDITIONS}
    assert chains == {"paper_salt_pepper": "salt_pepper:p=0.09", "paper_jpeg": "jpeg:quality=15",
                      "paper_resize": "resize:size=256", "paper_downsample2x": "downsample:factor=2,size=256",
                      "paper_downsample4x": "downsample:factor=4,size=256"}


def test_every_corruption_and_default_is_documented():
    text = DOCS.read_text()
    for name, info in CORRUPTIONS.items():
        assert f"`{name}`" in text, f"{name} missing from docs/corruptions.md"
        for key, _, default, doc in info.parameters():
            assert doc, f"{name}.{key} has no help text"
            assert f"{key}={default:g}" in text.replace("`", ""), \
                f"default {name}:{key}={default:g} is not stated in docs/corruptions.md"
    for preset in PRESETS:
        assert f"`{preset}`" in text


@pytest.mark.parametrize("name", PIXEL_KINDS)
def test_pixel_corruptions_keep_the_contract(name, photos):
    """uint8 HxWx3 out, input untouched, works on tiny and odd-sized images too."""
    for image in (photos["chelsea"], photos["coffee"][:7, :5], np.full((1, 1, 3), 200, np.uint8)):
        before = image.copy()
        out = run(name if name not in ("resize", "downsample") else f"{name}:size=4", image, 3)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert not np.shares_memory(out, image)
        np.testing.assert_array_equal(image, before)


# ------------------------------------------------------------------------------------------ salt/pepper
@pytest.mark.parametrize("p", [0.01, 0.09, 0.3])
def test_salt_pepper_hits_a_fraction_p_of_pixels_with_black_or_white(p, photos):
    image = photos["china"]
    out = run(f"salt_pepper:p={p}", image, sample_id=7)
    changed = np.any(out != image, axis=2)
    # Only pure black or pure white pixels appear where something changed, all three channels at once.
    assert set(map(tuple, out[changed].reshape(-1, 3))) <= {(0, 0, 0), (255, 255, 255)}
    # A hit pixel changes unless it already had the drawn colour: expected count per pixel is
    # p * (P(salt) [not white] + P(pepper) [not black]).
    white = np.all(image == 255, axis=2)
    black = np.all(image == 0, axis=2)
    expected = p * (0.5 * ~white + 0.5 * ~black)
    n = changed.size
    assert abs(changed.sum() - expected.sum()) <= 5 * np.sqrt(n * p * (1 - p)) + 1
    extreme = np.all(out == 255, axis=2) | np.all(out == 0, axis=2)
    hits = extreme & ~(white | black)
    assert binomial_ok(np.all(out[hits] == 255, axis=1).sum(), int(hits.sum()), 0.5)   # salt vs pepper 50/50


def test_salt_pepper_extremes():
    image = np.full((64, 64, 3), 100, np.uint8)
    np.testing.assert_array_equal(run("salt_pepper:p=0", image), image)
    full = run("salt_pepper:p=1", image)
    assert np.all((full == 0) | (full == 255)) and np.all(full.min(axis=2) == full.max(axis=2))


# ------------------------------------------------------------------------------------------------- JPEG
def _pillow_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def test_jpeg_equals_pillow_and_psnr_rises_with_quality(photos):
    cv2 = pytest.importorskip("cv2")
    qualities = [5, 10, 15, 25, 50, 75, 95]
    for name, image in photos.items():
        psnrs = []
        for q in qualities:
            out = run(f"jpeg:quality={q}", image, sample_id=q)
            np.testing.assert_array_equal(out, _pillow_jpeg(image, q), err_msg=f"{name} q={q}")
            psnrs.append(_psnr(image, out))
        assert all(b > a for a, b in zip(psnrs, psnrs[1:])), f"{name}: PSNR {psnrs} does not rise with quality"
        assert psnrs[0] < 30 < psnrs[-1], f"{name}: PSNR {psnrs} out of the usual JPEG range"
    # An independent encoder (OpenCV's libjpeg) at the same quality gives the same image within rounding.
    image = photos["astronaut"]
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 15])
    ref = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    assert abs(_psnr(image, ref) - _psnr(image, run("jpeg:quality=15", image))) < 0.1


# ------------------------------------------------------------------------------------ resize/downsample
def test_resize_equals_torchvision_resize(photos):
    tv = pytest.importorskip("torchvision.transforms")
    portrait = np.ascontiguousarray(photos["coffee"].transpose(1, 0, 2))
    for image, sizes in [(photos["china"], (256, 97, 700)), (photos["chelsea"], (256,)), (portrait, (256, 33))]:
        for size in sizes:
            ref = np.asarray(tv.Resize(size)(Image.fromarray(image)))
            out = run(f"resize:size={size}", image)
            np.testing.assert_array_equal(out, ref)
            assert min(out.shape[:2]) == size


def test_resize_is_antialiased():
    """A 1-pixel checkerboard halved must become flat grey; point sampling would keep full contrast."""
    board = ((np.indices((256, 256)).sum(axis=0) % 2) * 255).astype(np.uint8)
    out = run("resize:size=128", np.repeat(board[..., None], 3, axis=2))
    assert out.std() < 3 and abs(out.mean() - 127.5) < 2


def test_downsample_is_resize_then_lanczos_round_trip(photos):
    tvf = pytest.importorskip("torchvision.transforms.functional")
    from torchvision.transforms import InterpolationMode

    image = photos["china"]
    np.testing.assert_array_equal(run("downsample:size=256,factor=1", image), run("resize:size=256", image))
    base = tvf.resize(Image.fromarray(image), 256, InterpolationMode.BILINEAR)
    w, h = base.size
    small = tvf.resize(base, [round(h / 4), round(w / 4)], InterpolationMode.LANCZOS)
    ref = np.asarray(tvf.resize(small, [h, w], InterpolationMode.LANCZOS))
    out = run("downsample:size=256,factor=4", image)
    assert out.shape == run("resize:size=256", image).shape == (256, 383, 3)
    np.testing.assert_array_equal(out, ref)


def _band_energy(image: np.ndarray, lo: float, hi: float = 1.0) -> float:
    """Fraction of the luma power spectrum (Hann-windowed) with max(|fx|, |fy|)/Nyquist in (lo, hi]."""
    g = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    g -= g.mean()
    h, w = g.shape
    power = np.abs(np.fft.fft2(g * np.outer(np.hanning(h), np.hanning(w)))) ** 2
    radius = 2 * np.maximum(np.abs(np.fft.fftfreq(h))[:, None], np.abs(np.fft.fftfreq(w))[None, :])
    return power[(radius > lo) & (radius <= hi)].sum() / power.sum()


def test_downsample_removes_energy_above_one_over_factor_of_nyquist(photos):
    for name, image in photos.items():
        control = run("resize:size=256", image)
        for factor in (2, 4):
            out = run(f"downsample:size=256,factor={factor}", image)
            kept = _band_energy(out, 1 / factor) / _band_energy(control, 1 / factor)
            assert kept < 0.1, f"{name} x{factor}: {kept:.3f} of the control's energy above 1/{factor} Nyquist"
        # Between 1/4 and 1/2 of Nyquist: the 2x round trip keeps most of it, the 4x one removes it.
        ref = _band_energy(control, 0.25, 0.5)
        assert _band_energy(run("downsample:size=256,factor=2", image), 0.25, 0.5) > 0.5 * ref
        assert _band_energy(run("downsample:size=256,factor=4", image), 0.25, 0.5) < 0.1 * ref


# --------------------------------------------------------------------------------------- blur and noise
@pytest.mark.parametrize("sigma", [0.7, 3.0])
def test_gaussian_blur_matches_scipy_and_the_formula(sigma, photos):
    ndimage = pytest.importorskip("scipy.ndimage")
    image = photos["chelsea"]
    out = run(f"gaussian_blur:sigma={sigma}", image)
    ref = np.clip(np.rint(ndimage.gaussian_filter(image.astype(np.float64), (sigma, sigma, 0), mode="reflect",
                                                  truncate=4.0)), 0, 255)
    diff = np.abs(out.astype(np.int64) - ref.astype(np.int64))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3       # only float ties at .5 may round differently
    # Direct sum of the formula at interior pixels: sum_xy exp(-(x^2+y^2)/2s^2) I / sum_xy exp(...).
    r = gaussian_radius(sigma)
    x = np.arange(-r, r + 1)
    k = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma ** 2))
    k /= k.sum()
    for (i, j) in [(150, 200), (40, 60), (250, 400)]:
        patch = image[i - r:i + r + 1, j - r:j + r + 1].astype(np.float64)
        expected = np.einsum("xy,xyc->c", k, patch)
        assert np.all(np.abs(out[i, j] - expected) <= 0.5 + 1e-6)


def test_gaussian_blur_shrinks_white_noise_variance_as_predicted():
    """For i.i.d. noise the variance falls by sum(k^2) of the kernel (~ 1 / (4 pi sigma^2))."""
    rng = np.random.default_rng(1)
    image = np.clip(np.rint(128 + rng.normal(0, 25, (400, 400, 3))), 0, 255).astype(np.uint8)
    sigma = 2.0
    r = gaussian_radius(sigma)
    k1 = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    k1 /= k1.sum()
    predicted = image.astype(np.float64).var() * (k1 ** 2).sum() ** 2 + 1 / 12     # + rounding variance
    measured = run(f"gaussian_blur:sigma={sigma}", image)[20:-20, 20:-20].astype(np.float64).var()
    assert abs(measured / predicted - 1) < 0.05
    assert abs(predicted - 625 / (4 * np.pi * sigma ** 2)) / predicted < 0.05


@pytest.mark.parametrize("sigma", [0.05, 0.1])
def test_gaussian_noise_has_the_stated_std_in_unit_range(sigma):
    grey = np.full((256, 256, 3), 128, np.uint8)
    noise = run(f"gaussian_noise:sigma={sigma}", grey, sample_id=11).astype(np.float64) - 128
    n = noise.size
    expected_std = np.sqrt((255 * sigma) ** 2 + 1 / 12)                  # + uniform rounding error
    assert abs(noise.std() / expected_std - 1) < 5 / np.sqrt(2 * n)
    assert abs(noise.mean()) < 5 * expected_std / np.sqrt(n)
    channels = noise.reshape(-1, 3).T
    assert np.all(np.abs(np.corrcoef(channels)[np.triu_indices(3, 1)]) < 5 / np.sqrt(n / 3))


def test_gaussian_noise_default_clips_like_a_normal_tail():
    """sigma 0.18 (45.9 levels) on grey 128: the fraction clipped to 255 is P(N > 126.5)."""
    from scipy.stats import norm

    grey = np.full((256, 256, 3), 128, np.uint8)
    out = run("gaussian_noise", grey, sample_id=2)
    p = norm.sf(126.5 / (0.18 * 255))
    assert binomial_ok((out == 255).sum(), out.size, p)


# -------------------------------------------------------------------------------------------- labels
def test_label_noise_flips_the_rate_uniformly_to_other_classes():
    from scipy.stats import chisquare

    n, classes, rate = 120_000, 10, 0.2
    labels = np.random.default_rng(0).integers(0, classes, n)
    ids = np.arange(1000, 1000 + n)
    new, changed = CorruptionChain.build(f"label_noise:rate={rate}", seed=5).noisy_labels(labels, ids, classes)
    assert new.dtype == np.int64 and changed.dtype == bool
    np.testing.assert_array_equal(changed, new != labels)
    assert binomial_ok(changed.sum(), n, rate)                       # never to the same class: all flips show
    for c in range(classes):                                          # uniform over the 9 other classes
        targets = np.bincount(new[changed & (labels == c)], minlength=classes)
        assert targets[c] == 0
        assert chisquare(np.delete(targets, c)).pvalue > 1e-4, f"class {c}: {targets}"
    assert chisquare(np.bincount(labels[changed], minlength=classes),
                     np.bincount(labels, minlength=classes) * changed.mean()).pvalue > 1e-4   # not class-biased


def test_label_noise_depends_only_on_the_sample_id():
    labels = np.arange(5000) % 7
    ids = np.arange(5000) * 3 + 17
    chain = CorruptionChain.build("label_noise:rate=0.3", seed=1)
    full, _ = chain.noisy_labels(labels, ids, 7)
    order = np.random.default_rng(2).permutation(5000)[:1234]
    part, _ = chain.noisy_labels(labels[order], ids[order], 7)
    np.testing.assert_array_equal(part, full[order])
    other, _ = CorruptionChain.build("label_noise:rate=0.3", seed=2).noisy_labels(labels, ids, 7)
    assert 0.3 < (other != full).mean() < 0.6
    assert not CorruptionChain.build("label_noise:rate=0").noisy_labels(labels, ids, 7)[1].any()
    assert CorruptionChain.build("label_noise:rate=1").noisy_labels(labels, ids, 7)[1].all()
    record = label_noise_record(ids, labels, full)
    assert record["num_changed"] == len(record["ids"]) == (full != labels).sum()
    assert all(full[ids == i][0] == nl and labels[ids == i][0] == ol
               for i, ol, nl in zip(record["ids"][:50], record["original"][:50], record["noisy"][:50]))


def test_label_noise_errors_and_pixel_passthrough():
    chain = CorruptionChain.build(["label_noise", "jpeg"])
    with pytest.raises(WriterError, match="at least 2 classes"):
        chain.noisy_labels(np.zeros(4, int), np.arange(4), 1)
    with pytest.raises(WriterError, match=r"\[0, 3\)"):
        chain.noisy_labels(np.array([0, 3]), np.arange(2), 3)
    image = np.full((16, 16, 3), 90, np.uint8)
    np.testing.assert_array_equal(chain(image, 0), run("jpeg", image))     # label steps leave pixels alone


def _splitmix64_reference(key: int, sample_id: int, stream: int) -> float:
    """SplitMix64 output at position ``sample_id`` of the sequence seeded by (key, stream), in Python ints."""
    mask = (1 << 64) - 1
    z = (stable_hash64(f"{key}/{stream}") + sample_id * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return ((z ^ (z >> 31)) >> 11) / 2 ** 53


def test_label_draws_are_splitmix64_and_pinned():
    """Manifests record (name, params, seed, id): the id -> draw mapping must not change between versions."""
    ids = np.array([0, 1, 2 ** 40, 2 ** 62 + 7])
    u = uniforms(12345, ids, 0)
    assert u.tolist() == [_splitmix64_reference(12345, int(i), 0) for i in ids]
    assert u[:3].tolist() == [0.7498388369304679, 0.5843947072596974, 0.03646462081262469]
    assert stable_hash64("label_noise:rate=0.2") == 0xC1832C819B29A35C        # blake2b-64: machine-independent


# ------------------------------------------------------------------------------------------ determinism
def _apply(args):
    chain, sample_id, image = args
    return sample_id, chain(image, sample_id)


def test_pixels_depend_only_on_chain_seed_and_id(photos):
    image = photos["coffee"][::4, ::4].copy()
    chain = CorruptionChain.build(["salt_pepper:p=0.2", "gaussian_noise:sigma=0.05", "jpeg:quality=50"], seed=9)
    ids = [5, 0, 123456789012, 3, 5]
    forward = {i: chain(image, i) for i in ids}
    backward = {i: chain(image, i) for i in reversed(ids)}
    clone = pickle.loads(pickle.dumps(chain))
    assert clone == chain
    for i in ids:
        np.testing.assert_array_equal(forward[i], backward[i])
        np.testing.assert_array_equal(forward[i], clone(image, i))
    ctx = mp.get_context("fork")
    results = {}
    for workers in (1, 2):
        with ctx.Pool(workers) as pool:
            results[workers] = dict(pool.map(_apply, [(chain, i, image) for i in ids[::-1]], chunksize=1))
    for i in ids:
        np.testing.assert_array_equal(results[1][i], forward[i])
        np.testing.assert_array_equal(results[2][i], forward[i])
    assert not np.array_equal(forward[0], forward[3])                                         # other id
    assert not np.array_equal(forward[0], CorruptionChain(chain.specs, seed=10)(image, 0))    # other seed


def test_seeding_uses_canonical_params_not_spelling_or_position():
    grey = np.full((32, 32, 3), 128, np.uint8)
    a = run("gaussian_noise", grey, 4)
    np.testing.assert_array_equal(a, run("gaussian_noise:sigma=0.18", grey, 4))
    np.testing.assert_array_equal(a, CorruptionChain.build(["resize:size=32", "gaussian_noise"])(grey, 4))
    twice = CorruptionChain.build(["gaussian_noise:sigma=0.05"] * 2)(grey, 4).astype(np.float64) - 128
    once = run("gaussian_noise:sigma=0.05", grey, 4).astype(np.float64) - 128
    assert abs(twice.std() / once.std() - np.sqrt(2)) < 0.1        # a repeated step draws new noise


# ---------------------------------------------------------------------------------------------- specs
def test_parse_fills_defaults_and_round_trips():
    spec = parse_corruption("downsample:size=128 , factor=4")
    assert spec.describe() == "downsample:factor=4,size=128" and spec.slug() == "downsample-factor4-size128"
    assert parse_corruption("jpeg") == parse_corruption("jpeg:quality=15") == make_spec("jpeg", quality=15)
    chain = CorruptionChain.build(["resize:size=256", "paper_downsample4x", "label_noise:rate=0.1"], seed=3)
    assert chain.describe() == "resize:size=256+downsample:factor=4,size=256+label_noise:rate=0.1"
    assert CorruptionChain.build(chain.describe(), 3) == chain
    assert CorruptionChain.from_manifest(chain.manifest()) == chain
    assert chain.manifest()[1] == {"name": "downsample", "params": {"size": 256, "factor": 4.0},
                                   "id": "downsample:factor=4,size=256", "kind": "pixel", "seed": 3}
    assert re.fullmatch(r"[A-Za-z0-9_.+=-]+", chain.slug())
    assert chain.has_pixels and chain.has_labels and not chain.is_identity
    empty = CorruptionChain.build([])
    assert empty.is_identity and empty.describe() == "none" and CorruptionChain.build("none") == empty


@pytest.mark.parametrize("text, words", [
    ("jpg", ["unknown corruption 'jpg'", "did you mean 'jpeg'"]),
    ("salt_peper:p=0.1", ["did you mean 'salt_pepper'"]),
    ("jpeg:q=10", ["no parameter 'q'", "quality"]),
    ("salt_pepper:p=1.5", ["p=1.5", "[0, 1]"]),
    ("salt_pepper:p=-0.1", ["p=-0.1"]),
    ("jpeg:quality=0", ["quality=0", "[1, 100]"]),
    ("jpeg:quality=101", ["quality=101"]),
    ("jpeg:quality=7.5", ["quality", "integer"]),
    ("downsample:factor=0.5", ["factor=0.5", ">= 1"]),
    ("downsample:size=2,factor=4", ["factor=4", "size=2"]),
    ("gaussian_blur:sigma=-1", ["sigma=-1"]),
    ("gaussian_noise:sigma=abc", ["sigma", "number"]),
    ("gaussian_noise:sigma=inf", ["sigma", "finite"]),
    ("resize:size=0", ["size=0"]),
    ("label_noise:rate=2", ["rate=2"]),
    ("jpeg:quality", ["'quality' is not k=v"]),
    ("jpeg:quality=5,quality=6", ["'quality' is given twice"]),
    ("paper_jpeg:quality=5", ["preset"]),
    ("", ["no name"]),
    ("jpeg+", ["no name"]),
])
def test_bad_specs_fail_as_one_line_naming_the_parameter(text, words):
    with pytest.raises(WriterError) as err:
        parse_corruptions(["resize:size=256", text])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"corruption '{text}'" if "+" not in text else "corruption '")
    for word in words:
        assert word in message


def test_bad_seed_and_direct_params_fail_early():
    with pytest.raises(WriterError, match="seed"):
        CorruptionChain.build("jpeg", seed=-1)
    with pytest.raises(WriterError, match="jpeg: quality=0"):
        get_corruption("jpeg").params(quality=0)
    with pytest.raises(WriterError, match="RGB uint8"):
        CorruptionChain.build("jpeg")(np.zeros((4, 4), np.uint8), 0)


def test_shorter_side_size_matches_torchvision_rounding():
    assert shorter_side_size(427, 640, 256) == (256, 383)       # int(), not round(): 383.6 -> 383
    assert shorter_side_size(640, 427, 256) == (383, 256)
    assert shorter_side_size(10, 10, 3) == (3, 3)


# -------------------------------------------------------------------------------------- through the writer
def test_corrupted_beton_is_identical_for_any_worker_count_and_holds_the_chain_pixels(digits_index, tmp_path):
    """Through the real writer hook (``write_split(corrupt=...)``), raw mode so stored pixels are exact."""
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption

    from dataset_writers.write import ImageOptions, write_split

    index = digits_index["test"]
    chain = CorruptionChain.build(["downsample:size=32,factor=4", "salt_pepper:p=0.05",
                                   "gaussian_noise:sigma=0.03", "label_noise:rate=0.3"], seed=4)
    labels, changed = chain.noisy_labels(index.labels, index.ids, len(index.class_names))
    opts = ImageOptions(max_resolution=32, write_mode="raw", page_size=1 << 21)
    digests = {w: write_split(index, tmp_path / f"w{w}.beton", image=opts, corrupt=chain, labels=labels,
                              workers=w).sha256 for w in (1, 2)}
    assert len(set(digests.values())) == 1
    loader = Loader(str(tmp_path / "w2.beton"), batch_size=128, num_workers=1, order=OrderOption.SEQUENTIAL,
                    drop_last=False, pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()],
                               "index": [IntDecoder()]})
    got = {}
    for batch in loader:
        for name, value in zip(loader.pipeline_specs, batch):
            got.setdefault(name, []).append(value.copy() if isinstance(value, np.ndarray) else value.numpy().copy())
    images, stored_labels, ids = (np.concatenate(got[k]) for k in ("image", "label", "index"))
    np.testing.assert_array_equal(ids[:, 0], index.ids)
    np.testing.assert_array_equal(stored_labels[:, 0], labels)
    assert 0.2 < changed.mean() < 0.4
    for pos in (0, 17, len(index) - 1):
        np.testing.assert_array_equal(images[pos], chain(index.source.load(pos), int(index.ids[pos])))


# ---------------------------------------------------------------- corruptions meet the full-resolution source
# Real ImageNet-like photographs (longer side 500, as ImageNet's typical and iNat21's maximum size), stored
# as the writer stores them by default; the paper corrupted the full-resolution images, so each condition
# must keep its meaning relative to the full-resolution source whatever the storage cap.

def _photo_index(tmp_path, count: int, long_side: int, as_files: bool):
    """``count`` real photo crops (scikit-image / scikit-learn photographs), as JPEG files (q95) or arrays."""
    from dataset_writers.records import FileImages, SplitIndex
    from ffcv_ssl.bench._photos import PhotoCrops

    crops = PhotoCrops(seed=3, count=count, long_side=long_side)
    images = [crops.load(i) for i in range(count)]
    if as_files:
        names = []
        for i, im in enumerate(images):
            names.append(f"{i}.jpg")
            Image.fromarray(im).save(tmp_path / names[-1], quality=95)
        source = FileImages(tmp_path, names)
    else:
        source = _ListImages(images)
    return SplitIndex(dataset="photos", split="train", ids=np.arange(100, 100 + count), labels=np.zeros(count),
                      class_names=["photo"], source=source)


class _ListImages:
    """Arrays of different shapes (an ``ImageSource``); picklable."""

    def __init__(self, images):
        self.images = images

    def load(self, pos, draft_max_side=None):
        return self.images[pos]

    def describe(self, pos):
        return f"photo[{pos}]"


def _stored(beton: Path) -> list:
    from dataset_writers.inspect import stored_image
    from dataset_writers.manifest import read_manifest

    return [stored_image(beton, pos)[0] for pos in range(read_manifest(beton).num_samples)]


def _write(index, out, spec=None, **image):
    from dataset_writers.write import ImageOptions, write_split

    chain = CorruptionChain.build(spec, seed=0) if spec else None
    write_split(index, out, image=ImageOptions(page_size=1 << 22, **image), corrupt=chain, workers=0)
    return _stored(out)


def test_corruptions_apply_to_the_full_resolution_source_before_the_storage_cap(tmp_path):
    """Raw storage (no re-encode), sources twice the cap: what is stored is cap(chain(full decode)),
    not chain(cap(draft decode)), so salt & pepper dots are drawn on the photo's own pixels."""
    from dataset_writers.images import open_rgb
    from dataset_writers.write import resize_max_side

    index = _photo_index(tmp_path, 3, long_side=768, as_files=True)
    chain = CorruptionChain.build("salt_pepper:p=0.09", seed=0)
    got = _write(index, tmp_path / "sp.beton", "salt_pepper:p=0.09", max_resolution=384, write_mode="raw")
    for pos, stored in enumerate(got):
        source = open_rgb(tmp_path / f"{pos}.jpg")
        np.testing.assert_array_equal(stored, resize_max_side(chain(source, 100 + pos), 384))


def test_salt_pepper_survives_default_storage_at_its_density_before_re_encoding(tmp_path):
    """At the default cap a 500-px photo is not resampled, so every dot is stored as a saturated pixel."""
    index = _photo_index(tmp_path, 4, long_side=500, as_files=False)
    p = 0.09
    clean = _write(index, tmp_path / "clean.beton", write_mode="raw")
    dotted = _write(index, tmp_path / "sp.beton", f"salt_pepper:p={p}", write_mode="raw")
    for pos, (c, d) in enumerate(zip(clean, dotted)):
        source = index.source.load(pos)
        assert c.shape == d.shape == source.shape                          # the full-resolution source, uncapped
        np.testing.assert_array_equal(d, CorruptionChain.build(f"salt_pepper:p={p}")(source, 100 + pos))
        saturated = lambda im: np.all(im == 255, axis=2) | np.all(im == 0, axis=2)  # noqa: E731
        assert saturated(d)[np.any(c != d, axis=2)].all()                  # every changed pixel is a dot
        free = ~saturated(c)
        assert binomial_ok(int(saturated(d)[free].sum()), int(free.sum()), p), pos   # at density p


def _round_trip_loss(image: np.ndarray, factor: float) -> float:
    """Mean squared luma change of a Lanczos down-by-``factor``-and-back round trip: the detail the image
    holds above 1/factor of its Nyquist frequency."""
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((round(w / factor), round(h / factor)), Image.Resampling.LANCZOS)
    back = np.asarray(small.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float64)
    weights = np.array([0.299, 0.587, 0.114])
    return float(np.mean(((image.astype(np.float64) - back) @ weights) ** 2))


def test_resize_and_downsample_keep_their_factor_relative_to_the_source_at_the_default_storage(tmp_path):
    """Default storage (cap, JPEG q90): the resize control must shrink the clean stored image by
    source_short / 256 (1.46 for a 500x375 photo, as in the paper), not by the cap's 288 / 256 = 1.1; the
    2x condition must hold 2x less detail than the control on top of that."""
    index = _photo_index(tmp_path, 4, long_side=500, as_files=False)
    clean = _write(index, tmp_path / "clean.beton")
    resized = _write(index, tmp_path / "resize.beton", "paper_resize")
    down2 = _write(index, tmp_path / "down2.beton", "paper_downsample2x")
    for pos, (c, r, d) in enumerate(zip(clean, resized, down2)):
        source_short = min(index.source.load(pos).shape[:2])
        assert min(r.shape[:2]) == min(d.shape[:2]) == 256
        measured = min(c.shape[:2]) / min(r.shape[:2])
        assert measured == pytest.approx(source_short / 256, rel=0.01), pos
        # the 2x image holds (almost) nothing above half its Nyquist frequency; the control does
        assert _round_trip_loss(d, 2.0) < 0.25 * _round_trip_loss(r, 2.0), pos
        assert measured * 2 == pytest.approx(source_short / 128, rel=0.01)
