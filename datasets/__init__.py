"""Data: on-disk formats and their readers and writers, procedural scenes, and how views are sampled for training and evaluation."""
