"""Cameras and what is computed from them alone (scene normalisation, camera paths, image resizing), and
from posed photos alone (epipolar matches, depth ranges, exposure gains)."""
