"""Find photos whose pose in a COLMAP model is not pinned down, and take them out.

Relaxed mapping settings register more photos, and some of them badly. Two photos are linked
when at least MIN_SHARED 3D points are seen from both. When a group of photos is linked to the
rest of the model only through one photo (a cut vertex of that graph), nothing fixes the group's
scale about that photo's centre: it can slide along the link, reproject every point perfectly and
still be wrong. A photo with fewer than MIN_POINTS 3D points is not pinned down either.
"""

from __future__ import annotations

from collections import Counter, defaultdict

MIN_POINTS = 30
MIN_SHARED = 15


def link_graph(recon) -> dict[int, set[int]]:
    """Registered image id -> ids of the registered images it shares >= MIN_SHARED 3D points with."""
    shared: dict[int, Counter] = defaultdict(Counter)
    for point in recon.points3D.values():
        ids = {el.image_id for el in point.track.elements}
        for a in ids:
            shared[a].update(ids - {a})
    registered = {im.image_id for im in recon.images.values() if im.has_pose}
    return {i: {j for j, n in shared[i].items() if n >= MIN_SHARED and j in registered} for i in registered}


def components(graph: dict[int, set[int]], removed: int | None = None) -> list[set[int]]:
    """Connected components of ``graph`` without the node ``removed``, largest first."""
    seen, out = {removed}, []
    for start in graph:
        if start in seen:
            continue
        part, stack = set(), [start]
        seen.add(start)
        while stack:
            node = stack.pop()
            part.add(node)
            for nxt in graph[node]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        out.append(part)
    return sorted(out, key=len, reverse=True)


def unpinned(graph: dict[int, set[int]]) -> dict[int, int | None]:
    """Images not rigidly tied to the main part: image id -> the one image they hang on (None
    when they share no points with the main part at all)."""
    parts = components(graph)
    out = {i: None for part in parts[1:] for i in part}
    for hinge in parts[0] if parts else ():
        for part in components({i: graph[i] for i in parts[0]}, removed=hinge)[1:]:
            out.update({i: hinge for i in part})
    return out


def drop_weakly_posed(recon) -> dict[str, str]:
    """Deregister (in place) photos whose pose is not pinned down, until every remaining one is.
    Models of two photos are left as they are. Returns name -> reason in plain words."""
    dropped: dict[str, str] = {}
    while recon.num_reg_images() >= 3:
        weak = {im.image_id: f"registered from only {im.num_points3D} 3D points, too few to pin its pose"
                for im in recon.images.values() if im.has_pose and im.num_points3D < MIN_POINTS}
        if not weak:
            for image_id, hinge in unpinned(link_graph(recon)).items():
                weak[image_id] = ("shares no 3D points with the main part of the model" if hinge is None else
                                  f"is tied to the rest of the model through {recon.image(hinge).name} alone, so its "
                                  "distance along that link is not determined")
        if not weak or len(weak) > recon.num_reg_images() - 2:
            break
        for image_id, reason in weak.items():
            image = recon.image(image_id)
            dropped[image.name] = reason
            recon.deregister_frame(image.frame_id)
    return dropped
