"""Uploads in the demos (lectures_code/demos/common.py): checked from the header, decoded once, deleted from
Gradio's upload folder once read, and nothing else on disk touched."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from gradio.components.image_editor import EditorData, EditorDataBlobs
from gradio.data_classes import FileData, ListFiles
from PIL import Image

from lectures_code.demos import common
from lectures_code.demos import lecture13_selective_search as ss_demo
from lectures_code.demos.common import BadInput, DecodedUploads


@pytest.fixture()
def upload_folder(tmp_path, monkeypatch):
    folder = tmp_path / "gradio"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def _png(width: int, height: int, value: int = 128) -> bytes:
    buffer = io.BytesIO()
    pixels = np.full((height, width, 3), value, np.uint8)
    pixels[: height // 2] = 255 - value  # not blank
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _uploaded(folder, name: str, content: bytes):
    """Where Gradio's upload route puts a file: <folder>/<sha256 of the content>/<name>."""
    path = folder / "0f3a" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return path


def test_an_upload_is_decoded_once_then_deleted(upload_folder):
    path = _uploaded(upload_folder, "cat.png", _png(40, 30))
    calls = []

    def decode(p):
        calls.append(p)
        return ss_demo.load_upload(p)

    uploads = DecodedUploads(capacity=2)
    image, original = uploads.read(str(path), decode)
    assert original == (40, 30) and image.mode == "RGB"
    assert not path.exists() and not path.parent.exists()  # the file and its content-hash folder
    assert uploads.read(str(path), decode)[1] == (40, 30) and len(calls) == 1  # kept for the next event
    _uploaded(upload_folder, "cat.png", _png(40, 30))  # the same content uploaded again: same path
    assert uploads.read(str(path), decode)[1] == (40, 30) and not path.exists() and len(calls) == 1


def test_a_refused_upload_is_deleted_and_its_message_kept(upload_folder):
    path = _uploaded(upload_folder, "notes.png", b"not an image")
    uploads = DecodedUploads()
    for _ in range(2):
        with pytest.raises(BadInput, match="无法识别为图片"):
            uploads.read(str(path), ss_demo.load_upload)
        assert not path.exists()


def test_only_the_most_recent_uploads_are_kept(upload_folder):
    uploads = DecodedUploads(capacity=2)
    paths = [_uploaded(upload_folder, f"{i}.png", _png(20 + i, 20)) for i in range(3)]
    for path in paths:
        uploads.read(str(path), ss_demo.load_upload)
    with pytest.raises(BadInput, match="找不到上传的文件"):  # the oldest was dropped and its file is gone
        uploads.read(str(paths[0]), ss_demo.load_upload)
    assert uploads.read(str(paths[2]), ss_demo.load_upload)[1] == (22, 20)


def test_a_file_outside_the_upload_folder_is_read_and_left_alone(upload_folder, tmp_path):
    path = tmp_path / "mine.png"
    path.write_bytes(_png(30, 30))
    uploads = DecodedUploads()
    assert uploads.read(str(path), ss_demo.load_upload)[1] == (30, 30)
    assert path.exists()
    common.remove_upload(path)
    common.remove_upload(upload_folder / ".." / "mine.png")  # "..": outside, whatever the spelling
    assert path.exists()


@pytest.mark.parametrize("content, message", [
    (b"", "空的"),
    (b"x" * 100, "无法识别为图片"),
    (_png_header(20000, 20000), "尺寸过大"),
    (_png_header(5000, 5000), "尺寸过大"),
])
def test_the_header_check_refuses_before_decoding(content, message, tmp_path):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    for source in (str(path), content):
        with pytest.raises(BadInput, match=message):
            common.open_image_header(source, max_bytes=2**20, max_pixels=4096 * 4096)
    with pytest.raises(BadInput, match="文件太大"):
        common.open_image_header(_png(64, 64), max_bytes=100, max_pixels=4096 * 4096)
    with pytest.raises(BadInput, match="找不到"):
        common.open_image_header(str(tmp_path / "missing.png"), max_bytes=100, max_pixels=100)


def test_the_file_input_creates_no_temporary_file(upload_folder):
    component = common.image_file(type="filepath", file_count="single")
    path = _uploaded(upload_folder, "cat.png", _png(40, 30))
    before = sorted(upload_folder.rglob("*"))
    assert component.preprocess(FileData(path=str(path))) == str(path)
    assert component.preprocess(ListFiles([FileData(path=str(path)), FileData(path=str(path))])) == [str(path)] * 2
    assert component.preprocess(None) is None
    assert sorted(upload_folder.rglob("*")) == before  # Gradio's own File.preprocess leaves a tmpXXXX here


def test_the_sketchpad_refuses_a_bomb_before_gradio_decodes_it(upload_folder):
    sketchpad = common.checked_sketchpad(max_pixels=4096 * 4096, type="numpy", image_mode="RGB")
    bomb = _uploaded(upload_folder, "bomb.png", _png_header(20000, 20000))
    refused = sketchpad.preprocess(EditorData(composite=FileData(path=str(bomb))))
    assert isinstance(refused, BadInput) and "尺寸过大" in str(refused) and not bomb.exists()
    sketch = _uploaded(upload_folder, "sketch.png", _png(64, 48))
    value = sketchpad.preprocess(EditorData(composite=FileData(path=str(sketch))))
    assert value["composite"].shape == (48, 64, 3) and not sketch.exists()
    # the browser's way: the image bytes sent ahead, the event names them by id
    sketchpad.blob_storage["abc"] = EditorDataBlobs(background=None, layers=[], composite=_png_header(9000, 9000))
    refused = sketchpad.preprocess(EditorData(id="abc"))
    assert isinstance(refused, BadInput) and "abc" not in sketchpad.blob_storage
    sketchpad.blob_storage["def"] = EditorDataBlobs(background=None, layers=[], composite=_png(30, 30))
    assert sketchpad.preprocess(EditorData(id="def"))["composite"].shape == (30, 30, 3)


def test_sketches_sent_but_never_used_do_not_pile_up():
    sketchpad = common.checked_sketchpad(max_pixels=100, type="numpy")
    for i in range(100):
        sketchpad.blob_storage[f"id{i}"] = EditorDataBlobs(background=None, layers=[], composite=b"x")
    blobs = sketchpad.blob_storage
    assert len(blobs) == 32 and "id99" in blobs and "id0" not in blobs


def test_gradios_own_file_input_leaves_a_temporary_file(upload_folder):
    """Why image_file exists: when this fails, Gradio has fixed its File.preprocess and the wrapper can go."""
    import gradio as gr

    path = _uploaded(upload_folder, "cat.png", _png(40, 30))
    before = set(upload_folder.rglob("*"))
    gr.File(type="filepath", file_count="single").preprocess(FileData(path=str(path)))
    left = set(upload_folder.rglob("*")) - before
    assert len(left) == 1 and next(iter(left)).stat().st_size == 0
