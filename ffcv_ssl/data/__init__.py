"""Data files shipped with the package (the paper's values); a package so that setuptools ships them."""
