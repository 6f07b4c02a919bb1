"""Writing outputs without touching inputs: atomic files, and output folders that share a
folder with the user's own files.

A command that writes a folder of results (``nvs reconstruct``) builds them in a hidden staging
folder inside ``--out`` and renames each entry into place when the run succeeds. It never writes
into, replaces or deletes a file or folder that it did not create: an entry name already taken by
something else (the photos themselves, say ``scene/images`` for ``--out scene``) gets a new name,
and the names a run wrote are listed in ``OUT/.nvs-outputs.json`` so that a later run may replace
them, and skips them when it reads photos from the same folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

MANIFEST = ".nvs-outputs.json"
STAGING_PREFIX = ".nvs-staging-"


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place: a reader (or
    a run killed halfway) sees the old file or the new one, never a part of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def owned_entries(folder: Path) -> set[str]:
    """Names of the entries of ``folder`` that an earlier run wrote (its manifest), else empty."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text())
        return {n for n in data.get("entries", []) if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")}
    except (OSError, ValueError, AttributeError):
        return set()


def is_output_path(path: Path, top: Path) -> bool:
    """True when ``path`` (below the folder ``top``) lies in a staging folder or in an entry that
    a run listed in its manifest: outputs, not inputs, on a later run."""
    path, top = Path(path), Path(top)
    try:
        rel = path.relative_to(top)
    except ValueError:
        return False
    folder = top
    for part in rel.parts[:-1] + rel.parts[-1:]:
        if part.startswith(STAGING_PREFIX) or part == MANIFEST or part in owned_entries(folder):
            return True
        folder = folder / part
    return False


class StagedOutput:
    """The entries of one run's output folder, staged and then moved into place.

    ``wanted``: entry name -> True for folders that may take another name when the name is
    taken (``images`` -> ``images_nvs``), False for files that keep their name (the run is
    refused before anything is written when such a name is taken by something not ours).
    """

    def __init__(self, out: Path, inputs: list[Path], wanted: dict[str, bool]):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"{self.out} is an existing file; --out must be a folder")
        self.inputs = [Path(os.path.abspath(p)) for p in inputs]
        real_inputs = [Path(os.path.realpath(p)) for p in inputs]
        out_abs = Path(os.path.abspath(self.out))
        owned = owned_entries(self.out)
        self.names: dict[str, str] = {}
        taken = []
        for entry, renamable in wanted.items():
            name = entry
            for k in range(1, 100):
                target = out_abs / name
                clash = (target.exists() or target.is_symlink()) and name not in owned
                # a new name inside an input folder is fine (later runs skip it); the input itself,
                # or a folder holding it, is not
                real_target = Path(os.path.realpath(target))
                feeds = any(target == p or target in p.parents or real_target == r or real_target in r.parents
                            for p, r in zip(self.inputs, real_inputs))
                if not clash and not feeds:
                    break
                if not renamable:
                    taken.append(str(self.out / name))
                    break
                name = f"{entry}_nvs" + (str(k) if k > 1 else "")
            self.names[entry] = name
        if taken:
            raise ValueError(f"{', '.join(taken)} already exist(s) and were not written by this command, or are inputs; "
                             "nothing was written: choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        self.staging = self.out / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        self.staging.mkdir()

    def path(self, entry: str) -> Path:
        """Where to write ``entry`` during the run (inside the staging folder)."""
        return self.staging / self.names[entry]

    def commit(self) -> dict[str, str]:
        """Move every staged entry into place (replacing only our own earlier outputs), record
        them in the manifest, and remove the staging folder with whatever else is left in it."""
        previous = owned_entries(self.out)
        for entry, name in self.names.items():
            staged, final = self.staging / name, self.out / name
            if not (staged.exists() or staged.is_symlink()):
                continue
            if final.exists() or final.is_symlink():
                old = self.staging / f".old-{name}"
                os.replace(final, old)  # ours (checked in __init__): out of the way, deleted with the staging folder
            os.replace(staged, final)
        entries = sorted(previous | {n for n in self.names.values() if (self.out / n).exists()})
        atomic_write_text(self.out / MANIFEST, json.dumps({"written_by": "nvs", "entries": entries}, indent=1))
        shutil.rmtree(self.staging, ignore_errors=True)
        return dict(self.names)

    def abort(self) -> None:
        """Remove what this run wrote (the staging folder only)."""
        shutil.rmtree(self.staging, ignore_errors=True)
