"""The renderers shipped inside the package (weights and their manifests)."""

from pathlib import Path

ASSETS = Path(__file__).parent
DEMO_CHECKPOINT = ASSETS / "demo_lact.safetensors"
