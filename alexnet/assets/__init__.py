"""Data files shipped with the package (the ImageNet class names); a package so setuptools ships it."""
