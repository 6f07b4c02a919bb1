"""The renderers shipped inside the package (weights and their manifests): one trained on objects
(turntables), one on walks through rooms (scene-normalised)."""

from pathlib import Path

ASSETS = Path(__file__).parent
OBJECT_CHECKPOINT = ASSETS / "lact_object.safetensors"
SCENE_CHECKPOINT = ASSETS / "lact_scene.safetensors"
SHIPPED = {"object": OBJECT_CHECKPOINT, "scene": SCENE_CHECKPOINT}
