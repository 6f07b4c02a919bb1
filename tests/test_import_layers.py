"""The package's layers: every module imports only from lower layers (or its own subpackage)."""

import ast

from tests.helpers import ROOT

# lowest first; a module imports from its own entry and from lower layers; entries of one layer do not
# import each other, except among the foundations (first) and the entry points (last)
LAYERS = [
    ("nvs.cameras", "nvs.geometry", "nvs.io", "nvs.progress", "nvs.assets"),
    ("nvs.kernels",),
    ("nvs.models", "nvs.datasets"),
    ("nvs.inference",),
    ("nvs.evaluation", "nvs.reconstruction"),
    ("nvs.training",),
    ("nvs.adaptation",),
    ("nvs.viewer",),
    ("nvs.commands", "nvs.__main__"),
]
SOURCE_ROOTS = {"nvs": ROOT / "nvs", "nvs.models": ROOT / "models", "nvs.kernels": ROOT / "kernels",
                "nvs.datasets": ROOT / "datasets"}


def _entry(module: str) -> tuple[int, str] | None:
    for level, entries in enumerate(LAYERS):
        for entry in entries:
            if module == entry or module.startswith(entry + "."):
                return level, entry
    return None


def _modules():
    for package, folder in SOURCE_ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            if package == "nvs" and parts[0] in ("models", "kernels", "datasets"):
                continue
            yield name, path


def test_every_module_belongs_to_a_layer():
    unplaced = [name for name, _ in _modules() if name != "nvs" and _entry(name) is None]
    assert not unplaced, f"modules outside every layer of LAYERS: {unplaced}"


def test_imports_point_downward():
    upward = []
    for name, path in _modules():
        here = _entry(name)
        if here is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for target in targets:
                if target == "nvs" and isinstance(node, ast.ImportFrom):
                    target = "nvs." + node.names[0].name
                there = _entry(target)
                if there is None or there[1] == here[1]:
                    continue
                sideways = there[0] == here[0] and here[0] not in (0, len(LAYERS) - 1)
                if there[0] > here[0] or sideways:
                    upward.append(f"{name} imports {target}")
    assert not upward, "imports that do not point downward:\n" + "\n".join(upward)
