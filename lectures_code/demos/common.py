"""What every demo shares: an offline theme and input checks that answer in words, not tracebacks."""

from __future__ import annotations

import math

import gradio as gr

# Gradio's default theme pulls fonts from Google; system fonts keep every request on 127.0.0.1.
OFFLINE_THEME = gr.themes.Default(
    font=[gr.themes.Font("system-ui"), gr.themes.Font("WenQuanYi Micro Hei"), "sans-serif"],
    font_mono=[gr.themes.Font("ui-monospace"), gr.themes.Font("DejaVu Sans Mono"), "monospace"],
)


class BadInput(ValueError):
    """An input a reader can fix; its message is shown in the demo."""


def positive_float(value, name: str, maximum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} 必须是数字（收到 {value!r}）") from None
    if not math.isfinite(number) or number <= 0:
        raise BadInput(f"{name} 必须是有限的正数（收到 {value}）")
    if maximum is not None and number > maximum:
        raise BadInput(f"{name} 不能超过 {maximum:g}（收到 {value}）")
    return number


def int_in_range(value, name: str, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} 必须是整数（收到 {value!r}）") from None
    if not math.isfinite(number) or number != int(number):
        raise BadInput(f"{name} 必须是整数（收到 {value}）")
    if not low <= number <= high:
        raise BadInput(f"{name} 必须在 {low} 到 {high} 之间（收到 {int(number)}）")
    return int(number)
