"""Files in and out: images and videos, pickles of plain arrays, and the checks on untrusted input."""
