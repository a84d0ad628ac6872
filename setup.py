"""ffcv-ssl: fast multi-view data loading and the Cole et al. (CVPR 2022) study, runnable from configs."""
import re
from pathlib import Path

from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "ffcv_ssl" / "_version.py").read_text()).group(1)

# Pinned to a set that is known to work together (Python 3.10-3.12, numpy 2.4, numba 0.68, ffcv 1.0.2).
# ffcv 1.0.2 is an sdist: it compiles against libturbojpeg + OpenCV headers (apt: libturbojpeg0-dev
# libopencv-dev pkg-config), see run.sh. It imports distutils, hence setuptools at run time on 3.12.
INSTALL_REQUIRES = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "ffcv==1.0.2",
    "numpy==2.4.6",
    "numba==0.68.1",
    "tbb==2023.2.0",          # a numba threading layer that survives two loaders at once
    "opencv-python==5.0.0.93",
    "timm==1.0.31",
    "submitit==1.5.4",
    "rich==15.0.0",
    "omegaconf==2.4.0",
    "PyYAML==6.0.4",
    "matplotlib==3.11.2",
    "scikit-learn==1.9.1",    # embedded dataset (digits) for the demo
    "scikit-image==0.26.0",   # real photographs for fixtures and benchmarks
    "scipy==1.17.1",          # ImageNet devkit meta.mat
    "Pillow==13.0.0",
    "tifffile==2026.3.3",     # GeoLifeCLEF land-cover / altitude patches
    "psutil==7.2.2",
    "setuptools>=70",         # distutils shim that ffcv 1.0.2 imports at run time on Python 3.12
]

# configs/ and each folder under it (pretrain/, sweeps/, eval/, ...) as data packages ffcv_ssl.configs[.NAME]
CONFIG_PACKAGES = ["ffcv_ssl.configs"] + sorted(
    "ffcv_ssl.configs." + d.name for d in (HERE / "configs").iterdir() if d.is_dir() and not d.name.startswith("_"))

setup(
    name="ffcv-ssl",
    version=VERSION,
    description=__doc__,
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    # The repository keeps the design's top-level folders; two of them install *inside* ffcv_ssl so that a wheel
    # is complete and no generic top-level name is claimed: slurm/ -> ffcv_ssl.slurm (with cluster.sh) and
    # configs/ -> ffcv_ssl.configs (the shipped YAML configs and sweeps, see ffcv_ssl/paths.py).
    packages=find_packages(include=["ffcv_ssl", "ffcv_ssl.*", "dataset_writers", "dataset_writers.*"])
    + ["ffcv_ssl.slurm"] + list(CONFIG_PACKAGES),
    package_dir={"ffcv_ssl.slurm": "slurm", "ffcv_ssl.configs": "configs"},
    package_data={"ffcv_ssl.data": ["*.yaml"], "ffcv_ssl.slurm": ["cluster.sh"],
                  **{pkg: ["*.yaml"] for pkg in CONFIG_PACKAGES}},
    # the resize's horizontal pass with AVX2 + FMA (ffcv_ssl/ops/_hresize.c), called from numba by address;
    # dispatched at run time, so the build needs no special flags and other CPUs use the numba kernel
    ext_modules=[Extension("ffcv_ssl.ops._hresize", ["ffcv_ssl/ops/_hresize.c"], extra_compile_args=["-O3"])],
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest==9.2.0", "pytest-timeout==2.4.0"]},
    entry_points={"console_scripts": ["ffcv-ssl = ffcv_ssl.cli:main"]},
)
