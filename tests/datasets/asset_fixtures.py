"""A tiny furniture library written by the tests: a textured quad and a marker, as OBJ + MTL +
PNG inside a .sh3f zip with its catalogue."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# texture quadrants as seen in the image: top-left red, top-right green, bottom-left blue, bottom-right yellow
QUADRANT_COLORS = {"top_left": (255, 0, 0), "top_right": (0, 255, 0), "bottom_left": (0, 0, 255), "bottom_right": (255, 255, 0)}

# a unit square in the SweetHome3D frame (x right, y up), facing +z (the front), plus a small
# second square; v = 1 is the top of the texture image
QUAD_OBJ = """mtllib quad.mtl
v -0.5 0.0 0.0
v 0.5 0.0 0.0
v 0.5 1.0 0.0
v -0.5 1.0 0.0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vn 0 0 1
usemtl checker
f 1/1/1 2/2/1 3/3/1 4/4/1
"""

QUAD_MTL = """newmtl checker
Kd 0.2 0.2 0.2
d 1.0
map_Kd quad.png
newmtl glass
Kd 0.5 0.5 0.5
d 0.4
newmtl lost
Kd 0.3 0.6 0.9
map_Kd C:\\\\Users\\\\author\\\\wood.jpg
newmtl absent
map_Kd nowhere.png
"""


def checker_png(size: int = 64) -> bytes:
    img = np.zeros((size, size, 3), dtype=np.uint8)
    h = size // 2
    img[:h, :h] = QUADRANT_COLORS["top_left"]
    img[:h, h:] = QUADRANT_COLORS["top_right"]
    img[h:, :h] = QUADRANT_COLORS["bottom_left"]
    img[h:, h:] = QUADRANT_COLORS["bottom_right"]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


CATALOG = """# a test catalogue
id=Test#Library
name=Test library
license=Creative Commons Attribution 3.0 license

id#1=Test#quad
name#1=Quad \\u00e9t\\u00e9
category#1=Living room
model#1=/test/quad/quad.obj
width#1=100
depth#1=1
height#1=100
creator#1=Tester
movable#1=true
doorOrWindow#1=false

id#2=Test#turned
name#2=Turned quad
category#2=Miscellaneous
model#2=/test/quad/quad.obj
width#2=100
depth#2=100
height#2=1
modelRotation#2=1 0 0 0 0 1 0 -1 0
creator#2=Tester
"""


def write_library(folder: Path, obj: str = QUAD_OBJ, mtl: str = QUAD_MTL, catalog: str = CATALOG) -> Path:
    """folder/test.sh3f holding the catalogue, a LICENSE.TXT and the quad model."""
    path = folder / "test.sh3f"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("PluginFurnitureCatalog.properties", catalog.encode("iso-8859-1"))
        z.writestr("LICENSE.TXT", "Creative Commons Attribution 3.0\nhttp://creativecommons.org/licenses/by/3.0/\n")
        z.writestr("test/quad/quad.obj", obj)
        z.writestr("test/quad/quad.mtl", mtl)
        z.writestr("test/quad/quad.png", checker_png())
    return path
