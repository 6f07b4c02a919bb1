"""Progress reporting: long jobs call ``progress(stage, fraction)``; the terminal shows a bar per stage."""

from __future__ import annotations

from typing import Callable

from tqdm import tqdm

Progress = Callable[[str, float], None]


def no_progress(stage: str, fraction: float) -> None:
    """A ``Progress`` that reports nothing."""
    return None


class StageProgress:
    """A progress bar per stage on the terminal (tqdm), usable as the ``progress`` callback."""

    def __init__(self):
        self.stage, self.bar = None, None

    def __call__(self, stage: str, fraction: float) -> None:
        if stage == "done":
            self.close()
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=100, desc=stage, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}", leave=True)
        self.bar.n = round(100 * fraction)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.n = 100
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "StageProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
