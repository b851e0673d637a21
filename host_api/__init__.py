"""Hosts: where planes come from and where labels go.

``base`` holds the interface; each other module is one host and is imported only
when that host is used (``tiff`` for headless runs, ``vision4d`` inside arivis).
"""
from .base import DatasetInfo, Host, HostError, Nucleus, OutputTarget

__all__ = ["DatasetInfo", "Host", "HostError", "Nucleus", "OutputTarget"]
