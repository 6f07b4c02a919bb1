"""Structure from motion with COLMAP: plain photos or a video in, a posed scene out."""
