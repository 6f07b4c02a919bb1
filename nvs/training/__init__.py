"""Training: recipes, resumable sampling, checkpoints, weight surgery between recipes, and the accelerate loop."""
