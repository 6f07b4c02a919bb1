"""LaCT-NVS: novel view synthesis with Large-Chunk Test-Time Training."""

__version__ = "0.1.0"
