"""Integer addresses as raw pointers inside numba code: what cached kernels use to reach memory by address.

The batch kernels are C callbacks called by address, and so are the C passes they call (ffcv's ``imdecode``,
the resize's SIMD pass); their arrays travel as integer addresses and become ``numba.carray`` views here.
No ffcv import: the resize uses these too and must not pull ffcv in.
"""
from numba import types
from numba.core.extending import intrinsic


@intrinsic
def address_as_voidptr(typingctx, address):
    """An integer address as a ``void*`` (for C calls, and ``numba.carray(ptr, shape, dtype)``)."""
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
