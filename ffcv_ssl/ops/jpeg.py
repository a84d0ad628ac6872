"""ffcv's libjpeg-turbo ``imdecode`` and raw pointers, callable from *cached* numba kernels.

numba refuses to cache a function that calls a ctypes function (a "dynamic global"), and a parallel
kernel that must be recompiled costs ~10 s per loader. Registering the C symbol with LLVM under a fixed
name and declaring it as an ``ExternalFunction`` makes the call a plain symbol reference, so the whole
decode-and-augment kernel is compiled once and loaded from numba's cache afterwards.
"""
import ctypes

import llvmlite.binding as llvm
from ffcv.libffcv import ctypes_imdecode
from numba import types
from numba.core.extending import intrinsic

_SYMBOL = "ffcv_ssl_imdecode"
llvm.add_symbol(_SYMBOL, ctypes.cast(ctypes_imdecode, ctypes.c_void_p).value)

# int imdecode(uint8 *src, uint64 size, uint32 src_h, uint32 src_w, uint8 *dst, uint32 crop_h, uint32 crop_w,
#              uint32 off_x, uint32 off_y, uint32 scale_num, uint32 scale_denom, bool crop, bool hflip)
imdecode = types.ExternalFunction(_SYMBOL, types.int32(
    types.voidptr, types.uint64, types.uint32, types.uint32, types.voidptr, types.uint32, types.uint32,
    types.uint32, types.uint32, types.uint32, types.uint32, types.boolean, types.boolean))


@intrinsic
def address_as_voidptr(typingctx, address):
    """An integer address as a ``void*`` (for the C call)."""
    if isinstance(address, types.Integer):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(types.voidptr))
        return types.voidptr(address), codegen
    return None


@intrinsic
def address_as_bytes(typingctx, address):
    """An integer address as a ``uint8*`` (for ``numba.carray`` views of memory-mapped samples)."""
    if isinstance(address, types.Integer):
        ptr = types.CPointer(types.uint8)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(ptr))
        return ptr(address), codegen
    return None
