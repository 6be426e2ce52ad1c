"""What every demo shares: an offline theme, input checks that answer in words, not tracebacks, and uploads
that are checked before anything is decoded and removed from Gradio's upload folder once read."""

from __future__ import annotations

import io
import math
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import gradio as gr
from gradio.data_classes import FileData, ListFiles
from gradio.utils import NamedString, get_upload_folder
from PIL import Image

# Gradio's default theme pulls fonts from Google; system fonts keep every request on 127.0.0.1.
OFFLINE_THEME = gr.themes.Default(
    font=[gr.themes.Font("system-ui"), gr.themes.Font("WenQuanYi Micro Hei"), "sans-serif"],
    font_mono=[gr.themes.Font("ui-monospace"), gr.themes.Font("DejaVu Sans Mono"), "monospace"],
)

BUSY_MESSAGE = "忙，请稍后再试 / busy, try again"
MAX_UPLOAD_BYTES = 20 * 2**20  # one uploaded file; Gradio refuses bigger ones while they stream in (max_file_size)


class BadInput(ValueError):
    """An input a reader can fix; its message is shown in the demo."""


def positive_float(value, name: str, maximum: float | None = None) -> float:
    if isinstance(value, bool):
        raise BadInput(f"{name} 必须是数字（收到 {value!r}）")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{name} 必须是数字（收到 {value!r}）") from None
    if not math.isfinite(number) or number <= 0:
        raise BadInput(f"{name} 必须是有限的正数（收到 {value}）")
    if maximum is not None and number > maximum:
        raise BadInput(f"{name} 不能超过 {maximum:g}（收到 {value}）")
    return number


def int_in_range(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool):  # True is 1 to float(): a checkbox is not a number
        raise BadInput(f"{name} 必须是整数（收到 {value!r}）")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{name} 必须是整数（收到 {value!r}）") from None
    if not math.isfinite(number) or number != int(number):
        raise BadInput(f"{name} 必须是整数（收到 {value}）")
    if not low <= number <= high:
        raise BadInput(f"{name} 必须在 {low} 到 {high} 之间（收到 {int(number)}）")
    return int(number)


# ----------------------------------------------------------------------------------------------------
# Uploads. A browser upload lands in Gradio's upload folder (GRADIO_TEMP_DIR, by default <tmp>/gradio) under
# a folder named by the SHA-256 of its content; the event then passes that path to the handler.


def in_upload_folder(path) -> bool:
    """True for a file inside Gradio's upload folder (ours to delete); False for any other path."""
    try:
        Path(path).resolve().relative_to(Path(get_upload_folder()).resolve())
        return True
    except (ValueError, OSError, TypeError):
        return False


def remove_upload(path) -> None:
    """Delete an uploaded file, and its content-hash folder once empty; paths outside the folder are left alone."""
    if not in_upload_folder(path):
        return
    path = Path(path).resolve()
    path.unlink(missing_ok=True)
    folder = path.parent
    if folder != Path(get_upload_folder()).resolve():
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass


def open_image_header(source: str | bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """Open an image file (a path) or blob (bytes) reading its header only: no pixel is decoded here.

    Refuses with BadInput, in this order: a missing or empty file, more than ``max_bytes`` bytes, not an image,
    more than ``max_pixels`` pixels (a small PNG may claim 20000 x 20000: a decompression bomb).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        size, opened = len(source), io.BytesIO(source)
    else:
        try:
            size, opened = os.path.getsize(source), source
        except (OSError, TypeError):
            raise BadInput("找不到上传的文件，请重新上传") from None
    if size == 0:
        raise BadInput("上传的文件是空的（0 字节）")
    if size > max_bytes:
        raise BadInput(f"文件太大（{size / 2**20:.1f} MB），上限 {max_bytes / 2**20:g} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check the size ourselves
            image = Image.open(opened)  # reads the header only
    except Image.DecompressionBombError:
        raise BadInput(f"图片尺寸过大（超过 {max_pixels:,} 像素），请先缩小") from None
    except Exception:
        raise BadInput("无法识别为图片：请上传 PNG、JPEG、BMP、GIF 或 WebP 文件") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadInput(f"图片尺寸过大（{width}×{height}，超过 {max_pixels:,} 像素），请先缩小")
    return image


class DecodedUploads:
    """Each upload is decoded once, then its file is deleted; the decoded result is kept for the next events.

    The demos re-run on every slider move with the same upload path, so the result (or the BadInput it
    raised) is kept, the ``capacity`` most recent by path. The path names the content's SHA-256, so a kept
    result is the file's. One decode at a time: a 40-megapixel PNG takes about 160 MB while it is decoded.
    Paths outside Gradio's upload folder (a local file given to the handler directly) are read every time
    and never deleted.
    """

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._kept: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, path: str, decode):
        if not in_upload_folder(path):
            return decode(path)
        key = str(Path(path).resolve())
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                value = self._kept[key]
                remove_upload(key)  # the same content uploaded again lands on the same path
            else:
                try:
                    value = decode(key)
                except BadInput as err:
                    value = err
                finally:
                    remove_upload(key)
                self._kept[key] = value
                while len(self._kept) > self.capacity:
                    self._kept.popitem(last=False)
        if isinstance(value, BadInput):
            raise value
        return value


UPLOADS = DecodedUploads()


# Gradio writes a .pyi stub next to the source of every Component subclass when the class is created, so the
# two components below are Gradio's own, with their preprocess replaced on the instance.


def image_file(**kwargs) -> gr.File:
    """gr.File for one uploaded image, passed to the handler as its path.

    Gradio 6.31's File.preprocess creates an empty temporary file in the upload folder on every call and
    never deletes it; this one only passes the path on. The content is checked by the handler.
    """
    component = gr.File(**kwargs)

    def preprocess(payload: ListFiles | FileData | None) -> str | list[str] | None:
        if payload is None:
            return None
        files = payload.root if isinstance(payload, ListFiles) else [payload]
        paths = [NamedString(f.path) for f in files]
        return paths[0] if len(paths) == 1 else paths  # several: the handler asks for one

    component.preprocess = preprocess
    return component


class _RecentBlobs(dict):
    """The sketches a browser has sent ahead of their event (ImageEditor.blob_storage), the newest ``limit``:
    a blob that no event ever uses would otherwise stay in memory for good."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value):
        if key not in self and len(self) >= self.limit:
            del self[next(iter(self))]  # dicts keep insertion order: the oldest first
        super().__setitem__(key, value)


def checked_sketchpad(max_pixels: int, **kwargs) -> gr.Sketchpad:
    """gr.Sketchpad whose images are checked from their headers before Gradio decodes them.

    A bad image reaches the handler as the BadInput to show (the handler raises it); uploaded layer files
    are deleted once decoded. The browser sends each sketch with its event, so nothing needs keeping.
    """
    component = gr.Sketchpad(**kwargs)
    component.blob_storage = _RecentBlobs(limit=32)
    decode = component.preprocess

    def preprocess(payload):
        if payload is None:
            return None
        files = [f for f in (payload.background, *payload.layers, payload.composite) if f is not None]
        blobs = component.blob_storage.get(payload.id) if payload.id is not None else None
        sources = [f.path for f in files]
        if blobs is not None:
            sources += [b for b in (blobs.background, *blobs.layers, blobs.composite) if b is not None]
        try:
            for source in sources:
                open_image_header(source, MAX_UPLOAD_BYTES, max_pixels)
            return decode(payload)
        except BadInput as err:
            return err
        except Exception:
            return BadInput("画板图像已损坏，无法解码（wrong mode）")
        finally:
            if payload.id is not None:
                component.blob_storage.pop(payload.id, None)
            for f in files:
                remove_upload(f.path)

    component.preprocess = preprocess
    return component
