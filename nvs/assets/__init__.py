"""The renderers shipped inside the package (weights and their manifests)."""

from pathlib import Path

ASSETS = Path(__file__).parent
OBJECT_CHECKPOINT = ASSETS / "lact_object.safetensors"
