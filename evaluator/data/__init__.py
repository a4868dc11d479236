"""Datasets: a registry of image-set loaders (digits, synthetic, CIFAR-10, folders).

Importing this package is cheap: nothing heavy is imported here.
"""
