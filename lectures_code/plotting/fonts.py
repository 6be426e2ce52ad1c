"""The matplotlib backend and a CJK font, set once for every figure of the project."""

from __future__ import annotations

import sys

import matplotlib

if "ipykernel" not in sys.modules:
    # Scripts, the CLI and the demo server draw off-screen (and from worker threads); a notebook
    # keeps its inline backend so that figures appear under the cells.
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

# Debian fonts-wqy-microhei / fonts-noto-cjk: without one, Chinese labels render as empty boxes.
_CJK_CANDIDATES = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC"]


def use_cjk_font() -> str | None:
    """Put the first installed CJK font in front of matplotlib's sans-serif list; return its name."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in _CJK_CANDIDATES:
        if name in installed:
            plt.rcParams["font.sans-serif"] = [name, *plt.rcParams["font.sans-serif"]]
            plt.rcParams["axes.unicode_minus"] = False   # the CJK fonts lack the U+2212 minus glyph
            return name
    return None


use_cjk_font()
