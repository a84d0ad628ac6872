"""``MultiViewDecoder``: decode each stored image once, render V augmented views into one buffer.

Stock ffcv decodes a JPEG again for every view (one ``PipelineSpec`` per view; measured, a second view
costs ~40% more time) and resizes with INTER_AREA. This ffcv ``Operation`` decodes once (at libjpeg-turbo's
1/2 DCT scale when every crop of the sample is at least twice its output size), then crops, resizes
(PIL's antialiased bilinear), flips, colour-jitters, greys, blurs and solarizes every view inside one
parallel loop over the batch, into a ``(B, V, H, W, 3)`` uint8 buffer. Views may differ in size
(multi-crop): view ``v`` occupies ``[:h_v, :w_v]`` of the largest size.

Randomness comes from a counter RNG keyed by (seed, epoch, sample id, view), drawn before the
parallel loop, so batches are identical for any worker count, batch composition or DDP rank.

GPU-split mode (``host_colour=False``): the kernel stops after crop + resize + flip, and ``ColourParams``,
a second decoder of the same field, delivers the colour parameters drawn from the same keys; the
consumer's device then applies them (``device_colour.py``), freeing the host's cores.
"""
from dataclasses import replace
from typing import Callable, Optional, Sequence, Tuple

import math

import numba
import numpy as np
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State

from .blur import kernel_size_for
from .pointers import address_as_bytes
from .recipe import ViewConfig
from .resize import max_taps
from .views import (CROP_CENTER, CROP_FULL, CROP_RANDOM, F_BLUR_P, F_BRIGHT, F_CENTER, F_CONTRAST, F_FLIP_P,
                    F_GRAY_P, F_HUE, F_JITTER_P, F_LOGR_HI, F_LOGR_LO, F_SAT, F_SCALE_HI, F_SCALE_LO,
                    F_SIG_HI, F_SIG_LO, F_SOLAR_P, F_SOLAR_T, I_BLUR_RADIUS, I_CROP_MODE, I_OUT_H, I_OUT_W,
                    COLOUR_COLS, VIEW_FLOATS, VIEW_INTS, colour_batch, render_batch)

CROP_MODES = {"random": CROP_RANDOM, "center": CROP_CENTER, "full": CROP_FULL}   # the names of recipe.CROPS


def recipes_to_arrays(views: Sequence[ViewConfig]) -> Tuple[np.ndarray, np.ndarray]:
    """Kernel form of the views: (V, VIEW_FLOATS) float64 and (V, VIEW_INTS) int64, one row per view.

    ``views`` holds one ``ViewConfig`` per output view (``recipe.expand_views`` of the groups); a group
    with ``count`` > 1 here would silently render one view, so it is refused.
    """
    vf = np.zeros((len(views), VIEW_FLOATS), np.float64)
    vi = np.zeros((len(views), VIEW_INTS), np.int64)
    for v, r in enumerate(views):
        if r.count != 1:
            raise ValueError(f"view {v} has count={r.count}: pass expand_views(groups), one ViewConfig per view")
        r.validate()
        vf[v, F_SCALE_LO], vf[v, F_SCALE_HI] = r.scale
        vf[v, F_LOGR_LO], vf[v, F_LOGR_HI] = math.log(r.ratio[0]), math.log(r.ratio[1])
        vf[v, F_CENTER] = r.center_ratio
        vf[v, F_FLIP_P] = r.flip_p
        vf[v, F_JITTER_P] = r.jitter_p
        vf[v, F_BRIGHT], vf[v, F_CONTRAST], vf[v, F_SAT], vf[v, F_HUE] = r.jitter
        vf[v, F_GRAY_P] = r.gray_p
        vf[v, F_BLUR_P] = r.blur_p
        vf[v, F_SIG_LO], vf[v, F_SIG_HI] = r.blur_sigma
        vf[v, F_SOLAR_P] = r.solarize_p
        vf[v, F_SOLAR_T] = r.solarize_threshold
        vi[v, I_OUT_H], vi[v, I_OUT_W] = r.shape
        vi[v, I_CROP_MODE] = CROP_MODES[r.crop]
        vi[v, I_BLUR_RADIUS] = kernel_size_for(min(r.shape), r.blur_kernel) // 2 if r.blur_p > 0 else 0
    return vf, vi


class MultiViewDecoder(Operation):
    """Decoder for ``RGBImageField``: one decode per sample, ``len(views)`` views out.

    Args:
        views: one ``ViewConfig`` per output view (``recipe.expand_views`` of the groups).
        seed: augmentation seed (with the epoch, see ``set_epoch``, and the sample id it keys every draw).
        half_scale: allow libjpeg-turbo's 1/2 DCT-scaled decode when every crop permits it.
        roi_fraction: decode only the union of a sample's crops when it covers at most this fraction of
            the image (0: never). libjpeg-turbo 2.1's lossless crop re-reads the whole entropy stream, so it
            pays off only for small unions; ``ffcv-ssl bench loader`` measures it.
        host_colour: apply colour jitter, grayscale, blur and solarize here (CPU-complete mode); False
            stops after crop + resize + flip (GPU-split mode, see ``ColourParams``).
    """

    def __init__(self, views: Sequence[ViewConfig], seed: int = 0, half_scale: bool = True,
                 roi_fraction: float = 0.0, host_colour: bool = True):
        super().__init__()
        self.host_colour = bool(host_colour)
        if not views:
            raise ValueError("MultiViewDecoder needs at least one view")
        self.views = tuple(views)
        self.vf, self.vi = recipes_to_arrays(self.views)
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.half_scale = bool(half_scale)
        if not 0.0 <= roi_fraction <= 1.0:
            raise ValueError(f"roi_fraction={roi_fraction} must be in [0, 1]")
        self.roi_fraction = float(roi_fraction)
        self.out_h = int(self.vi[:, I_OUT_H].max())
        self.out_w = int(self.vi[:, I_OUT_W].max())
        # The epoch lives in an array read through its address by the compiled code: numba freezes
        # captured arrays as constants, so this is how a Python-side update reaches the kernel.
        self._state = np.zeros(2, np.int64)

    def set_epoch(self, epoch: int) -> None:
        self._state[0] = int(epoch)

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Optional[AllocationQuery]]:
        heights = self.metadata["height"].astype(np.int64)
        widths = self.metadata["width"].astype(np.int64)
        self.max_stored_side = int(max(heights.max(), widths.max())) if len(heights) else 1
        # decode buffers are sized per sample by its own area (and allocated per thread at run time),
        # never as max height x max width of the dataset (ffcv's decoders do that: tens of GB, pinned, when a
        # dataset was written without max_resolution)
        self.max_area = int((heights * widths).max()) if len(heights) else 1
        shape = (len(self.views), self.out_h, self.out_w, 3)
        dtype = np.dtype("<u1")
        return replace(previous_state, jit_mode=True, shape=shape, dtype=dtype), AllocationQuery(shape, dtype)

    def generate_code(self) -> Callable:
        # The closure only gathers where each sample's bytes are; drawing the parameters and the parallel
        # decode-and-augment kernel run in a cached C callback called by address (views.render_batch), so
        # a new loader compiles ~0.3 s of glue (a parallel loop compiled per loader: ~10 s; the cached
        # kernel called as a jitted function: ~3 s of re-linking).
        mem_read = self.memory_read
        vf, vi = self.vf, self.vi
        n_views = len(self.views)
        out_h, out_w = self.out_h, self.out_w
        seed = np.uint64(self.seed)
        state_addr = self._state.ctypes.data
        # sizes travel in an array, not as captured ints: numba would type captured ints as literals and
        # compile the kernel anew for every (size, taps, radius) combination
        shape = np.array([max(out_h, out_w),
                          max_taps(self.max_stored_side, int(min(vi[:, I_OUT_H].min(), vi[:, I_OUT_W].min()))),
                          max(1, int(vi[:, I_BLUR_RADIUS].max())), int(self.half_scale), int(self.host_colour)],
                         np.int64)
        roi = np.array([self.roi_fraction], np.float64)

        def multi_view_decode(batch_indices, destination, metadata, storage_state):
            n = len(batch_indices)
            vf_rw = vf.copy()            # addressable copies of the recipe (captured arrays are constants)
            vi_rw = vi.copy()
            state = numba.carray(address_as_bytes(state_addr), (16,)).view(np.int64)
            heights = np.empty(n, np.int64)
            widths = np.empty(n, np.int64)
            ids = np.empty(n, np.int64)
            modes = np.empty(n, np.int64)
            addresses = np.empty(n, np.uint64)
            sizes = np.empty(n, np.int64)
            for b in range(n):
                field = metadata[batch_indices[b]]
                data = mem_read(field["data_ptr"], storage_state)
                heights[b] = field["height"]
                widths[b] = field["width"]
                modes[b] = field["mode"]
                ids[b] = batch_indices[b]
                addresses[b] = data.ctypes.data
                sizes[b] = data.size
            # parameters drawn and views rendered by the cached kernel, called by address (views.py)
            render_batch(ids.ctypes.data, heights.ctypes.data, widths.ctypes.data, modes.ctypes.data,
                         addresses.ctypes.data, sizes.ctypes.data, vf_rw.ctypes.data, vi_rw.ctypes.data,
                         destination.ctypes.data, n, n_views, out_h, out_w * 3, seed, state[0], shape[3],
                         shape[0], shape[1], shape[2], roi[0], shape[4])
            return destination[:n]

        multi_view_decode.is_parallel = False     # the parallelism is inside the kernel (decode_batch)
        return multi_view_decode


class ColourParams(Operation):
    """Second decoder of the image field in GPU-split mode: each sample's colour parameters, no pixels.

    Output per sample: float64 ``(V, COLOUR_COLS)`` (columns ``C_*`` of ``views.py``), drawn by the same
    ``draw_params`` with the same (seed, epoch, sample id, view) keys as ``decoder`` (whose epoch it
    reads), so the device applies exactly what CPU-complete mode would have applied. It reads only the
    field's metadata (height, width), never the JPEG bytes.
    """

    def __init__(self, decoder: MultiViewDecoder):
        super().__init__()
        self.decoder = decoder

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Optional[AllocationQuery]]:
        shape = (len(self.decoder.views), COLOUR_COLS)
        dtype = np.dtype("<f8")
        return replace(previous_state, jit_mode=True, shape=shape, dtype=dtype), AllocationQuery(shape, dtype)

    def generate_code(self) -> Callable:
        vf, vi = self.decoder.vf, self.decoder.vi
        n_views = len(self.decoder.views)
        seed = np.uint64(self.decoder.seed)
        state_addr = self.decoder._state.ctypes.data

        def colour_params(batch_indices, destination, metadata, storage_state):
            n = len(batch_indices)
            vf_rw = vf.copy()
            vi_rw = vi.copy()
            state = numba.carray(address_as_bytes(state_addr), (16,)).view(np.int64)
            heights = np.empty(n, np.int64)
            widths = np.empty(n, np.int64)
            ids = np.empty(n, np.int64)
            for b in range(n):
                field = metadata[batch_indices[b]]
                heights[b] = field["height"]
                widths[b] = field["width"]
                ids[b] = batch_indices[b]
            colour_batch(ids.ctypes.data, heights.ctypes.data, widths.ctypes.data, vf_rw.ctypes.data,
                         vi_rw.ctypes.data, destination.ctypes.data, n, n_views, seed, state[0])
            return destination[:n]

        colour_params.is_parallel = False
        return colour_params
