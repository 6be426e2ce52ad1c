"""Matplotlib helpers shared by the figures, the demos, the CLI and the notebook pages.

    fonts.py    the Agg backend (outside notebooks) and a CJK font, set on import
    curves.py   plot_losses: loss against step
    boxes.py    show_image, draw_boxes: images and xyxy boxes on an Axes (object API, thread-safe)
"""

from lectures_code.plotting import fonts  # noqa: F401  (backend and CJK font before anything draws)
from lectures_code.plotting.boxes import PALETTE, draw_boxes, show_image, to_rgb_uint8
from lectures_code.plotting.curves import plot_losses
from lectures_code.plotting.fonts import use_cjk_font

__all__ = ["PALETTE", "draw_boxes", "plot_losses", "show_image", "to_rgb_uint8", "use_cjk_font"]
