"""Fast multi-view loading: configs, the ``ViewLoader`` around ffcv's ``Loader``, device-side finishing."""
from .config import DataConfig, ViewConfig, eval_view, supervised_view
from .loader import Batch, ViewLoader, make_loader

__all__ = ["DataConfig", "ViewConfig", "eval_view", "supervised_view", "Batch", "ViewLoader", "make_loader"]
