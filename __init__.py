"""StarDist 2D nuclei segmentation for arivis Vision4D, TIFF stacks and arrays in memory.

``from stardist_v4d import segment`` (``python_api``) is imported on first use, so that
importing the package (as worker processes do) stays cheap.
"""


def __getattr__(name: str):
    if name in ("segment", "release_models"):
        from . import python_api
        return getattr(python_api, name)
    raise AttributeError(f"module 'stardist_v4d' has no attribute {name!r}")


__all__ = ["segment", "release_models"]
