"""numba kernels (pure functions, testable on numpy arrays) and the thin ffcv ``Operation`` that runs them."""
