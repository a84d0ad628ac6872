"""GPU checks (run by benchmarks/gpu_check.sh; skipped without CUDA): loader GPU path, bf16 step, DDP over NCCL."""
import os
import time

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def photo_beton(tmp_path_factory):
    """256 real photographs (scikit-image / scikit-learn crops) at <= 256 px, JPEG q90."""
    import skimage.data as sd
    from sklearn.datasets import load_sample_image

    from dataset_writers.records import ArrayImages, SplitIndex
    from dataset_writers.write import ImageOptions, write_split

    photos = [sd.astronaut(), sd.chelsea(), sd.coffee(), sd.rocket(), load_sample_image("china.jpg"),
              load_sample_image("flower.jpg")]
    rng = np.random.default_rng(0)
    images = []
    for i in range(256):
        p = photos[i % len(photos)]
        h, w = p.shape[:2]
        ch, cw = int(h * 0.8), int(w * 0.8)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = np.ascontiguousarray(p[y:y + ch, x:x + cw])
        from PIL import Image
        images.append(np.asarray(Image.fromarray(crop).resize((256, 192))))
    index = SplitIndex("photos", "train", np.arange(256), np.arange(256) % 8, [str(i) for i in range(8)],
                       ArrayImages(np.stack(images)))
    out = tmp_path_factory.mktemp("gpu") / "photos.beton"
    write_split(index, out, image=ImageOptions(max_resolution=256), workers=2)
    return out


def test_loader_gpu_path_equals_cpu_path(photo_beton):
    """CPU-complete mode on CUDA (colour_on=host): the same bytes as on the CPU, up to bf16 rounding."""
    from ffcv_ssl.loading import ViewConfig, ViewLoader

    views = [ViewConfig(count=2)]
    cpu = ViewLoader(str(photo_beton), views, batch_size=32, num_workers=4, seed=3, device="cpu")
    gpu = ViewLoader(str(photo_beton), views, batch_size=32, num_workers=4, seed=3, device="cuda",
                     dtype=torch.bfloat16, colour_on="host")
    a, b = next(iter(cpu)), next(iter(gpu))
    assert b.views[0].device.type == "cuda" and b.views[0].dtype == torch.bfloat16
    assert b.views[0].is_contiguous(memory_format=torch.channels_last)
    for x, y in zip(a.views, b.views):
        torch.testing.assert_close(y.float().cpu(), x, rtol=1e-2, atol=2e-2)      # bf16 rounding only
    assert torch.equal(a.label, b.label.cpu())


def _grey_levels(loader, batch):
    fin = loader.finisher
    return [torch.round(x.float().cpu() / fin._inv_std + fin._mean).to(torch.int64) for x in batch.views]


def test_gpu_split_is_the_default_on_cuda_and_equals_cpu_complete(photo_beton):
    """GPU split (host: decode + crop + resize + flip; CUDA: colour, grayscale, blur) = CPU-complete mode."""
    from ffcv_ssl.loading import ViewConfig, ViewLoader

    views = [ViewConfig(count=2), ViewConfig(count=1, size=160, blur_p=1.0, solarize_p=0.5)]
    cpu = ViewLoader(str(photo_beton), views, batch_size=32, num_workers=4, seed=5, device="cpu")
    gpu = ViewLoader(str(photo_beton), views, batch_size=32, num_workers=4, seed=5, device="cuda")
    assert cpu.colour_on == "host" and gpu.colour_on == "device" and not gpu.decoder.host_colour
    batches = 0
    for a, b in zip(cpu, gpu):
        assert b.views[0].device.type == "cuda" and b.views[0].is_contiguous(memory_format=torch.channels_last)
        for x, y in zip(_grey_levels(cpu, a), _grey_levels(gpu, b)):
            d = (x - y).abs()
            assert int(d.max()) <= 1 and float((d != 0).float().mean()) < 0.01
        assert torch.equal(a.label, b.label.cpu())
        batches += 1
    assert batches == 8


def test_device_colour_on_cuda_equals_cpu_tensors():
    """The batched torch ops give the same grey levels on CUDA as on CPU tensors, for drawn parameters."""
    import numpy as np

    from ffcv_ssl.ops.decoder import recipes_to_arrays
    from ffcv_ssl.ops.device_colour import apply_colour
    from ffcv_ssl.ops.recipe import ViewConfig
    from ffcv_ssl.ops.views import COLOUR_COLS, PARAM_FLOATS, PARAM_INTS, colour_params, draw_params

    recipe = ViewConfig(size=224, jitter_p=1.0, gray_p=0.3, blur_p=0.7, solarize_p=0.3)
    vf, vi = recipes_to_arrays([recipe])
    n = 64
    pint = np.zeros((n, 1, PARAM_INTS), np.int64)
    pflt = np.zeros((n, 1, PARAM_FLOATS), np.float64)
    draw_params(np.arange(n, dtype=np.int64), np.full(n, 375, np.int64), np.full(n, 500, np.int64),
                np.uint64(1), 0, vf, vi, pint, pflt)
    cols = np.zeros((n, 1, COLOUR_COLS), np.float64)
    colour_params(pint, pflt, vi, cols)
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, 3, 232, 232, generator=g) * 255, 9, 1)
    crops = smooth.round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    params = torch.from_numpy(cols[:, 0])
    on_cpu = apply_colour(crops, params, int(vi[0, 3]))
    on_gpu = apply_colour(crops.cuda(), params.cuda(), int(vi[0, 3])).cpu()
    d = (on_cpu - on_gpu).abs()
    assert float(d.max()) <= 1 and float((d != 0).float().mean()) < 0.01


def test_bf16_resnet50_simclr_step(photo_beton, capsys):
    """One ResNet-50 SimCLR step at 224 px, batch 256, bf16 + channels_last: samples/s and peak memory."""
    from ffcv_ssl.config import load_config
    from ffcv_ssl.train.config import TrainConfig
    from ffcv_ssl.train.engine import build_run, train_step

    cfg = load_config(TrainConfig, "configs/pretrain/simclr_rn50.yaml",
                      [f"data.train={photo_beton}", "data.batch_size=256", "model.sync_bn=false", "tensorboard=false"])
    run = build_run(cfg, with_loader=False, steps_per_epoch=100)
    assert run.precision == "bf16"
    views = [torch.randn(256, 3, 224, 224, device="cuda").to(torch.bfloat16)
             .contiguous(memory_format=torch.channels_last) for _ in range(2)]
    labels = torch.zeros(256, dtype=torch.long, device="cuda")
    before = [p.detach().clone() for p in run.objective.backbone.parameters()][:3]
    for _ in range(3):
        out, _, _ = train_step(run, views, labels)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    n = 10
    for _ in range(n):
        out, _, _ = train_step(run, views, labels)
    torch.cuda.synchronize()
    rate = n * 256 / (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30
    assert torch.isfinite(out["loss"]).item() and out["loss"].dtype == torch.float32
    assert any(not torch.equal(b, p) for b, p in zip(before, run.objective.backbone.parameters()))
    with capsys.disabled():
        print(f"\n[gpu] ResNet-50 SimCLR bf16 channels_last, batch 256 x 2 views @224: {rate:,.0f} samples/s "
              f"({2 * rate:,.0f} views/s), peak memory {peak:.1f} GiB")


def _ddp_worker(rank, port, result):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).cuda()
    ref = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).cuda()
    ref.load_state_dict(model.state_dict())
    ddp = DDP(model, device_ids=[0])
    x = torch.randn(16, 8, device="cuda")
    ddp(x).pow(2).mean().backward()
    ref(x).pow(2).mean().backward()
    result.put(all(torch.allclose(a.grad, b.grad) for a, b in zip(model.parameters(), ref.parameters())))
    dist.destroy_process_group()


def test_ddp_one_process_over_nccl():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    result = ctx.Queue()
    proc = ctx.Process(target=_ddp_worker, args=(0, port, result))
    proc.start()
    proc.join(timeout=300)
    assert proc.exitcode == 0 and result.get(timeout=5) is True
