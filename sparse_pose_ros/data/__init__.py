"""Labelled data: synthetic mannequin renderer, Human3.6M loader, shard reader and augmentation.

Importing this package is cheap; the OpenGL renderer is only loaded by ``data.render``.
"""
