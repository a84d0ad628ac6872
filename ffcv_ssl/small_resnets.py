"""Narrow ResNets registered in timm, for CPU tests and the embedded miniature study.

They are timm's own ``ResNet`` class with fewer channels, so everything that works for ``resnet50``
(``timm.create_model``, checkpoints, ``pretrained_cfg_overlay`` loading of exported backbones) works
for them too, once this module is imported (``ffcv_ssl.models`` does it).
"""
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet, _cfg

default_cfgs = generate_default_cfgs({
    "ssl_resnet10_tiny.untrained": _cfg(input_size=(3, 32, 32), pool_size=(1, 1)),
    "ssl_resnet18_small.untrained": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
})


@register_model
def ssl_resnet10_tiny(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-10 (one BasicBlock per stage), widths 16-32-64-128: ~0.3M parameters, 128-d features."""
    args = dict(block=BasicBlock, layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_width=16)
    return build_model_with_cfg(ResNet, "ssl_resnet10_tiny", pretrained, **dict(args, **kwargs))


@register_model
def ssl_resnet18_small(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 layout, widths 32-64-128-256: ~2.8M parameters, 256-d features."""
    args = dict(block=BasicBlock, layers=(2, 2, 2, 2), channels=(32, 64, 128, 256), stem_width=32)
    return build_model_with_cfg(ResNet, "ssl_resnet18_small", pretrained, **dict(args, **kwargs))
