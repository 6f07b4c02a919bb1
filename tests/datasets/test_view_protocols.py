"""Evaluation view protocols: the official seeded sampling and the Long-LRM k-means inputs."""

import json
import random

import pytest
import torch

from nvs.datasets.formats import write_dataset
from nvs.datasets.procedural import generate_scene
from nvs.datasets.views import FileViews, OfficialSampler, kmeans, kmeans_views


def _cameras(positions, forwards=None):
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(positions), 1, 1)
    c2w[:, :3, 3] = torch.tensor(positions, dtype=torch.float64)
    if forwards is not None:
        c2w[:, :3, 2] = torch.tensor(forwards, dtype=torch.float64)
    return c2w


def test_kmeans_targets_every_eighth_frame_and_inputs_nearest_the_centroids():
    # 17 frames: targets 0, 8, 16. Frames 1-7 sit near x = 0 (x = 0.01 i), frames 9-15 near x = 10
    # (x = 10 + 0.01 i); two clusters whose means (0.04 and 10.12) are frames 4 and 12.
    positions = [[(10.0 if i > 8 else 0.0) + 0.01 * i, 0.0, 0.0] for i in range(17)]
    inputs, targets = kmeans_views(_cameras(positions), 2)
    assert targets == [0, 8, 16]
    assert inputs == [4, 12]


def test_kmeans_features_include_the_viewing_direction():
    # all frames at the origin; frames 1-7 look along +z, 9-15 along +x: the directions separate them
    forwards = [[0.0, 0.0, 1.0] if i < 8 else [1.0, 0.0, 0.0] for i in range(17)]
    inputs, _ = kmeans_views(_cameras([[0.0, 0.0, 0.01 * i] for i in range(17)], forwards), 2)
    assert inputs[0] in range(1, 8) and inputs[1] in range(9, 16)


def test_kmeans_is_deterministic_and_finds_separated_clusters():
    points = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0], [5.0, 20.0]])
    first, second = kmeans(points, 3), kmeans(points, 3)
    assert torch.equal(first, second)
    expected = {(0.0, 0.5), (10.0, 0.5), (5.0, 20.0)}
    assert {tuple(round(float(v), 6) for v in row) for row in first} == expected
    with pytest.raises(ValueError, match="k-means needs"):
        kmeans(points, 6)


def test_official_sampling_is_run_wide_seeded_at_95():
    sampler = OfficialSampler()
    got = [sampler.select(10, 3, 2), sampler.select(12, 3, 2)]
    # the rule, step by step: Python's random seeded once, frames sorted; torch.randperm seeded once
    frames_rng, split_rng = random.Random(95), torch.Generator().manual_seed(95)
    for (inputs, targets), n in zip(got, (10, 12)):
        frames = sorted(frames_rng.sample(range(n), 5))
        perm = torch.randperm(5, generator=split_rng).tolist()
        assert inputs == [frames[j] for j in perm[:3]] and targets == [frames[j] for j in perm[3:]]
    assert got[0] != got[1]
    with pytest.raises(ValueError, match="official sampling needs"):
        OfficialSampler().select(4, 3, 2)


def _dataset(tmp_path, counts):
    scenes = []
    for seed, views in enumerate(counts):
        s = generate_scene("object", seed, views, 16, 16)
        scenes.append((f"scene{seed}", s.images, s.cameras))
    return write_dataset(tmp_path / "data", "lact", scenes)


def test_file_views_official_order_does_not_depend_on_the_reading_order(tmp_path):
    index = _dataset(tmp_path, [9, 11])
    in_order = FileViews(index, 3, 2, 16, 16, selection="official")
    in_order[0], in_order[1]
    out_of_order = FileViews(index, 3, 2, 16, 16, selection="official")
    out_of_order[1], out_of_order[0]
    assert in_order.chosen == out_of_order.chosen
    sampler = OfficialSampler()
    expected = [sampler.select(9, 3, 2), sampler.select(11, 3, 2)]
    assert [(v["context"], v["target"]) for v in in_order.chosen.values()] == expected


def test_kmeans_selection_written_as_an_index_is_reused(tmp_path):
    index = _dataset(tmp_path, [17])
    data = FileViews(index, 2, 0, 16, 16, selection="kmeans")
    sample = data[0]
    assert data.chosen["scene0"]["target"] == [0, 8, 16] and len(data.chosen["scene0"]["context"]) == 2
    (tmp_path / "kmeans.json").write_text(json.dumps(data.chosen))
    again = FileViews(index, 2, 0, 16, 16, index=tmp_path / "kmeans.json")
    assert torch.equal(again[0]["inputs"], sample["inputs"]) and torch.equal(again[0]["targets"], sample["targets"])
