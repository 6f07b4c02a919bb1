"""Cameras and what is computed from them alone: scene normalisation, camera paths, image resizing."""
