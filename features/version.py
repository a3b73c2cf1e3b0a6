"""The package's version: what `omni --version`, the service's OpenAPI document and its
Prometheus metrics report."""

from __future__ import annotations

import functools
from importlib import metadata

DISTRIBUTION = "omni-personalize"
UNKNOWN = "0+unknown"
"""Reported when the code runs without being installed (no package metadata)."""


@functools.cache
def package_version() -> str:
    """The installed distribution's version, e.g. ``0.1.0``."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN
