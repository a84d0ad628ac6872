"""ffcv's libjpeg-turbo ``imdecode`` and raw pointers, callable from *cached* numba kernels.

``imdecode`` is registered with LLVM by ``ffcv_compat.register_imdecode`` (it depends on ffcv 1.0.2's C
signature); the intrinsics below turn integer addresses into the pointers it and ``numba.carray`` take.
"""
from numba import types
from numba.core.extending import intrinsic

from ..ffcv_compat import register_imdecode

imdecode = register_imdecode()


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
