"""What the storage cap (``--max-resolution``) costs and loses: bytes, decode time and 224-px crop quality.

Sources are real photographs (the scikit-image / scikit-learn ones of ``ffcv_ssl.bench._photos``), cut to
two shapes: ImageNet / iNat21-like (longer side 500, 4:3 / 3:2 / square mix) and Places365-large-like
(shorter side 512). Each is stored as the writer stores it (ffcv's ``INTER_AREA`` shrink to the cap, OpenCV
JPEG q90) and then measured:

- ``kB``: mean bytes per stored image;
- ``decode ms``: median full decode of one image with ffcv's libjpeg-turbo ``imdecode`` (one thread);
- ``PSNR``: RandomResizedCrop(224, scale (0.08, 1), ratio (3/4, 4/3)) crops, the same normalised boxes
  rendered from the stored image and from the uncompressed full-resolution source (``cv2.INTER_AREA``
  both, as ffcv's RRC), mean PSNR in dB over all crops, over the small crops (area < 0.25) and the large
  ones (area > 0.75);
- ``upsampled``: fraction of crops whose box is smaller than 224 px on the stored image (detail made up);
- ``resize ctrl``: the shorter side of the clean stored image over 256, i.e. how much the paper's
  ``resize:size=256`` control removes relative to the clean beton (paper: 375 / 256 = 1.46 on ImageNet).

Run: ``.venv/bin/python benchmarks/storage_caps.py [--images 48] [--crops 16]``; prints a Markdown table.
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from dataset_writers.write import resize_max_side
from ffcv_ssl.bench._photos import PhotoCrops

CAPS = (256, 320, 384, 448, 512, 0)   # 0: no cap


def store(src: np.ndarray, cap: int, quality: int = 90) -> bytes:
    """The writer's storage of ``src``: shrink to ``cap`` (INTER_AREA) and encode as ffcv does (BGR, q)."""
    img = resize_max_side(src, cap) if cap else src
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def decode(data: bytes) -> tuple[np.ndarray, float]:
    """ffcv's imdecode of ``data`` (full size); returns the pixels and the best of 5 times in ms."""
    from ffcv.libffcv import imdecode

    arr = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(arr, cv2.IMREAD_COLOR)          # for the dimensions only
    h, w = img.shape[:2]
    dst = np.empty((h, w, 3), np.uint8)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        imdecode(arr, dst, h, w, h, w, 0, 0, 1, 1, False, False)
        best = min(best, time.perf_counter() - t)
    return dst, best * 1e3


def rrc_boxes(rng: np.random.Generator, n: int, aspect_hw: float) -> list[tuple[float, float, float, float, float]]:
    """torchvision's RandomResizedCrop sampling on a unit-area image of height/width ``aspect_hw``:
    (top, left, height, width) as fractions of the image, and the area fraction."""
    out = []
    H, W = np.sqrt(aspect_hw), 1.0 / np.sqrt(aspect_hw)
    while len(out) < n:
        area = rng.uniform(0.08, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w, h = np.sqrt(area * ratio), np.sqrt(area / ratio)
        if w <= W and h <= H:
            top, left = rng.uniform(0, H - h), rng.uniform(0, W - w)
            out.append((top / H, left / W, h / H, w / W, area))
    return out


def render(img: np.ndarray, box) -> tuple[np.ndarray, bool]:
    top, left, h, w, _ = box
    H, W = img.shape[:2]
    y0, x0 = int(round(top * H)), int(round(left * W))
    y1, x1 = max(y0 + 1, int(round((top + h) * H))), max(x0 + 1, int(round((left + w) * W)))
    crop = img[y0:y1, x0:x1]
    return cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA), min(crop.shape[:2]) < 224


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def measure(sources: list[np.ndarray], crops: int, seed: int = 0) -> list[dict]:
    rows = []
    for cap in CAPS:
        kb, ms, all_p, small_p, large_p, up, ctrl = [], [], [], [], [], [], []
        for i, src in enumerate(sources):
            data = store(src, cap)
            stored, t = decode(data)
            kb.append(len(data) / 1e3)
            ms.append(t)
            ctrl.append(min(stored.shape[:2]) / 256)
            rng = np.random.default_rng([seed, i])
            for box in rrc_boxes(rng, crops, src.shape[0] / src.shape[1]):
                ref, _ = render(src, box)
                got, upsampled = render(stored, box)
                p = psnr(ref, got)
                all_p.append(p)
                (small_p if box[4] < 0.25 else large_p if box[4] > 0.75 else []).append(p)
                up.append(upsampled)
        rows.append({"cap": cap or "none", "kB": np.mean(kb), "decode_ms": np.median(ms), "psnr": np.mean(all_p),
                     "psnr_small": np.mean(small_p), "psnr_large": np.mean(large_p), "upsampled": np.mean(up),
                     "resize_ctrl": np.median(ctrl)})
    return rows


def places_like(photos: PhotoCrops, pos: int) -> np.ndarray:
    """A Places365-large-like source: an ImageNet-like crop at 683 px, i.e. shorter side ~512."""
    return PhotoCrops(photos.seed, photos.count, long_side=683).load(pos)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--crops", type=int, default=16)
    args = p.parse_args()
    cv2.setNumThreads(1)
    photos = PhotoCrops(seed=0, count=args.images)
    sets = {"ImageNet/iNat21-like (long side 500)": [photos.load(i) for i in range(args.images)],
            "Places365-large-like (long side 683)": [places_like(photos, i) for i in range(args.images)]}
    for name, sources in sets.items():
        shapes = np.array([s.shape[:2] for s in sources])
        print(f"\n{name}: {len(sources)} images, mean {shapes[:, 0].mean():.0f}x{shapes[:, 1].mean():.0f}, "
              f"{args.crops} RRC crops each\n")
        print("| cap | kB / image | decode ms | PSNR all | PSNR area<0.25 | PSNR area>0.75 | crops upsampled "
              "| resize ctrl |")
        print("|---|---|---|---|---|---|---|---|")
        for r in measure(sources, args.crops):
            print(f"| {r['cap']} | {r['kB']:.1f} | {r['decode_ms']:.2f} | {r['psnr']:.1f} | {r['psnr_small']:.1f} "
                  f"| {r['psnr_large']:.1f} | {r['upsampled']:.0%} | {r['resize_ctrl']:.2f}x |")


if __name__ == "__main__":
    main()
