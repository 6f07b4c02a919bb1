"""`nvs bench official-size` end to end on a tiny config (the published size takes about 20 minutes
on 2 CPU cores): official .pt + YAML written, read back equal, memorise and render timed."""

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_official_size_bench_writes_one_row(tmp_path):
    out = subprocess.run([sys.executable, "-m", "nvs", "bench", "official-size", "--config", "configs/lact-tiny.yaml",
                          "--views", "2", "--size", "32", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    (row,) = json.loads((tmp_path / "official-size.json").read_text())
    assert row["weights_equal"] and row["finite"] and row["views"] == 2 and row["size"] == 32
    assert row["parameters_m"] == 1.4 and row["newton_schulz"] == "bfloat16"
    assert row["memorize_s"] > 0 and row["render_s"] > 0 and row["run_peak_mb"] >= 0 and row["file_mb"] > 0
