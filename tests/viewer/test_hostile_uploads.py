"""The viewer attacked through its API (gradio_client against a running server): uploads that
name the server's files, escape their folder or explode in size, and messages that would tell
the server's paths. Then the server's own files: a failed request leaves none, a session stays
within its disk budget, and stopping the server (SIGINT, SIGTERM) removes them all."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port
from nvs.io.untrusted import VIEWER_LIMITS, with_limits

from ..io.attacks import random_image, small_scene, symlink_zip, write_frames, zeros_zip, zip_folder

BUDGET = with_limits(VIEWER_LIMITS, unpacked_bytes=8 << 20)  # small enough to exceed in a test


@pytest.fixture(scope="module")
def server():
    from nvs.viewer.app import launch

    port = free_port()
    demo = launch(port=port, block=False, limits=BUDGET)
    yield f"http://127.0.0.1:{port}/", demo.nvs_app
    demo.close()
    assert not demo.nvs_app.root.exists()  # closing the server removed every session's files


@pytest.fixture
def client(server, tmp_path):
    from gradio_client import Client

    return Client(server[0], verbose=False, download_files=str(tmp_path / "downloads"))


@pytest.fixture
def secret(tmp_path) -> Path:
    """An image on the server's disk, outside any upload."""
    return random_image(tmp_path / "server_only" / "secret.png", size=32, seed=7)


def _refused(client, upload: Path, *words: str) -> str:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(upload)), 8, api_name="/load_posed")
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    return message


def _no_server_paths(message: str, *paths: Path) -> None:
    """No server path in the message, other than what the upload itself wrote (removed by the caller)."""
    for path in paths:
        assert str(path) not in message and str(path.parent) not in message, message
    assert "/tmp" not in message and "nvs-app-" not in message and "/root" not in message, message


@pytest.mark.slow
def test_a_posed_zip_cannot_read_files_outside_it(client, server, secret, tmp_path):
    frames = small_scene(tmp_path / "scene", views=3)
    for i, name in enumerate([str(secret), f"../../../..{secret}", "../secret.png", "images/../../x.png"]):
        frames[1]["file_path"] = name
        write_frames(tmp_path / "scene", frames)
        message = _refused(client, zip_folder(tmp_path / "scene", tmp_path / f"attack{i}.zip"), "frame 1")
        assert "absolute" in message or "outside the scene's folder" in message
        _no_server_paths(message.replace(name, "(what the attacker wrote)"), secret, server[1].root)

    nerf = tmp_path / "nerf"
    nerf.mkdir()
    eye = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]
    (nerf / "transforms.json").write_text(json.dumps({"fl_x": 30, "w": 32, "h": 32, "frames": [
        {"file_path": str(secret), "transform_matrix": eye}, {"file_path": str(secret), "transform_matrix": eye}]}))
    message = _refused(client, zip_folder(nerf, tmp_path / "nerf.zip"), "absolute")
    _no_server_paths(message.replace(str(secret), "(what the attacker wrote)"), secret, server[1].root)

    link = symlink_zip(tmp_path / "link.zip", "images/000.png", str(secret))
    _no_server_paths(_refused(client, link, "link.zip", "a link"), secret, server[1].root)
    assert not list(server[1].root.glob("*/posed"))  # nothing of the refused uploads stays on the server


@pytest.mark.slow
def test_messages_name_files_relative_to_the_upload(client, server, tmp_path):
    frames = small_scene(tmp_path / "scene", views=3)
    frames[2]["file_path"] = "images/gone.png"
    write_frames(tmp_path / "scene", frames)
    message = _refused(client, zip_folder(tmp_path / "scene", tmp_path / "mine.zip"), "gone.png", "missing")
    _no_server_paths(message, server[1].root)


@pytest.mark.slow
def test_a_tiny_zip_listing_hundreds_of_frames_is_refused_quickly(client, server, tmp_path):
    frames = small_scene(tmp_path / "scene", views=1)
    write_frames(tmp_path / "scene", frames * 300)
    bomb = zip_folder(tmp_path / "scene", tmp_path / "frames.zip")
    assert bomb.stat().st_size < 20_000
    t0 = time.perf_counter()
    _refused(client, bomb, "300 frames in one scene; the limit is 128")
    assert time.perf_counter() - t0 < 60


@pytest.mark.slow
def test_archives_are_budgeted_over_the_whole_request_and_a_failed_request_leaves_no_files(client, server, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    app = server[1]
    zips = [zeros_zip(tmp_path / f"part{i}.zip", 5 << 20, name=f"part{i}.png") for i in range(2)]
    before = set(app.root.iterdir())
    with pytest.raises(AppError, match="8.0 MiB a request may unpack"):
        client.predict([handle_file(str(z)) for z in zips], 8, api_name="/reconstruct")
    assert set(app.root.iterdir()) == before  # the request's folder went with it

    bomb = zeros_zip(tmp_path / "one.zip", 20 << 20)
    assert bomb.stat().st_size < 100_000
    _refused(client, bomb, "one.zip", "of the 8.0 MiB a request may unpack")
    assert set(app.root.iterdir()) == before


@pytest.mark.slow
def test_a_good_upload_loads_and_a_session_keeps_one_video(client, server, tmp_path):
    small_scene(tmp_path / "scene", views=5, size=64)
    from gradio_client import handle_file

    status, *_ = client.predict(handle_file(str(zip_folder(tmp_path / "scene", tmp_path / "good.zip"))), 4,
                                api_name="/load_posed")
    assert "good.zip" in status and "4 input views" in status
    for _ in range(2):
        client.predict("orbit", 8, 12, api_name="/render_video")
    sessions = [p for p in server[1].root.iterdir() if (p / "posed").exists()]
    assert len(sessions) == 1 and len(list(sessions[0].glob("video-*.mp4"))) == 1


def _wait_up(url: str, process, timeout: float = 240) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read())
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the server did not start")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_server_removes_every_session_s_files(tmp_path, sig):
    from gradio_client import Client, handle_file

    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    env = {**os.environ, "TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(temp / "gradio")}
    process = subprocess.Popen([sys.executable, "-m", "nvs", "app", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_up(url, process)
        small_scene(tmp_path / "scene", views=3)
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        client.predict(handle_file(str(zip_folder(tmp_path / "scene", tmp_path / "s.zip"))), 2, api_name="/load_posed")
        roots = list(temp.glob("nvs-app-*"))
        assert len(roots) == 1 and list(roots[0].glob("*/posed/opencv_cameras.json"))
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "Traceback" not in err, err
    assert not list(temp.glob("nvs-app-*"))


@pytest.mark.slow
def test_api_numbers_outside_the_sliders_are_messages_and_the_server_stays_up(client, tmp_path):
    from gradio_client.exceptions import AppError

    client.predict(900_000_001, 4, api_name="/load_example")
    bad_views = [(0, 20, 1.0, 50, "azimuth"), (1e308, 20, 1.0, 50, "azimuth"), (0, 90, 1.0, 50, "elevation"),
                 (0, 20, 0.0, 50, "distance"), (0, 20, -1e9, 50, "distance"), (0, 20, 1.0, 0, "field of view"),
                 (0, 20, 1.0, 179.9, "field of view")]
    # gradio refuses values outside a slider's range itself; the handlers check again (the same
    # functions serve other callers) and name the input
    outside = "|greater than maximum|less than minimum|not in the list of choices"
    for *pose, name in bad_views[1:]:
        with pytest.raises(AppError, match=name + outside):
            client.predict(*pose, api_name="/render_view")
    for kind, frames, fps, name in [("../../../tmp/evil", 8, 12, "trajectory"), ("orbit", 10**9, 12, "frames"),
                                    ("orbit", 8, 0, "fps"), ("orbit", 1, 12, "frames"), ("orbit", 8, -24, "fps")]:
        with pytest.raises(AppError, match=name + outside):
            client.predict(kind, frames, fps, api_name="/render_video")
    assert not (Path("/tmp") / "evil").exists() and not list(Path("/tmp").glob("evil*"))
    for views in (0, -3, 10**6):
        with pytest.raises(AppError, match="input views" + outside):
            client.predict(900_000_001, views, api_name="/load_example")
    with pytest.raises(AppError, match="seed"):
        client.predict(-1, 4, api_name="/load_example")
    image, _, timing = client.predict(*bad_views[0][:4], api_name="/render_view")  # still serving
    assert "ms/view" in timing


@pytest.mark.slow
def test_the_handlers_check_numbers_themselves(tmp_path):
    """Without gradio's slider checks in front (a direct caller of the app's handlers)."""
    import gradio as gr

    from nvs.viewer import session as viewer
    from nvs.viewer.app import ViewerApp

    app = ViewerApp()
    try:
        state = app.load_example(900_000_001, 4, None)[0]
        for pose, name in [((1e308, 20, 1.0, 50), "azimuth"), ((0, 90, 1.0, 50), "elevation"),
                           ((0, 20, float("nan"), 50), "distance"), ((0, 20, 1.0, 0), "field of view"),
                           ((0, 20, 1.0, 121), "field of view"), ((0, 20, 1.0, 4.9), "field of view"),
                           (("east", 20, 1.0, 50), "azimuth")]:
            with pytest.raises(gr.Error, match=name):
                app.render_view(*pose, state)
        for fov in viewer.FOV_RANGE_DEG:  # the slider's ends render
            assert app.render_view(0, 20, 1.0, fov, state)[0] is not None
        for kind, frames, fps, name in [("../../x", 8, 12, "trajectory"), ("orbit", 10**9, 12, "frames"),
                                        ("orbit", 8, float("inf"), "fps")]:
            with pytest.raises(gr.Error, match=name):
                app.render_video(kind, frames, fps, state)
        with pytest.raises(gr.Error, match="input views"):
            app.load_example(900_000_001, 10**6, None)
        assert not list(app.root.glob("*/video-*"))
    finally:
        app.folders.cleanup()
