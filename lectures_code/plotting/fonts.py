"""The matplotlib backend and the CJK font, set once for every figure of the project.

The Chinese font is a dependency of the package, not of the machine: pip installs
`pylopdf-fonts-zh-cn` (Noto Sans SC Regular from Google/Adobe's Noto CJK, SIL OFL 1.1, one 8 MB
OpenType file) and `use_cjk_font` registers that file with matplotlib by path. So every figure is
drawn with the same font on a fresh machine, in CI and on a machine that has its own CJK fonts.
Without the package (an install that skipped it), an installed system CJK font is used instead,
and with neither we warn once: matplotlib would draw every Chinese character as an empty box.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:
    # Scripts, the CLI and the demo server draw off-screen (and from worker threads); a notebook
    # keeps its inline backend so that figures appear under the cells.
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager, ft2font  # noqa: E402

# The PyPI package that ships the font, and the pip command that installs it.
FONT_PACKAGE = "pylopdf_fonts_zh_cn"
FONT_PACKAGE_PIP_NAME = "pylopdf-fonts-zh-cn"

# Fallbacks when the package is missing: Debian's fonts-wqy-microhei / fonts-noto-cjk and their kin.
_SYSTEM_CJK_FONTS = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC"]


def packaged_cjk_font_path() -> Path | None:
    """The Noto Sans SC file shipped by the font package, or None when the package is not installed."""
    try:
        package = importlib.import_module(FONT_PACKAGE)
    except ImportError:
        return None
    path = Path(package.sans_path())
    return path if path.is_file() else None


def _installed_system_cjk_font() -> str | None:
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in _SYSTEM_CJK_FONTS if name in installed), None)


def use_cjk_font() -> str | None:
    """Put a CJK font in front of matplotlib's sans-serif list and return its family name.

    The packaged Noto Sans SC comes first; without it, the first installed system CJK font; with
    neither, a warning says how to install the package and None is returned.
    """
    path = packaged_cjk_font_path()
    if path is not None:
        font_manager.fontManager.addfont(str(path))   # registers by path: no system font directory needed
        name = font_manager.FontProperties(fname=path).get_name()   # "Noto Sans SC"
        has_minus = ord("\N{MINUS SIGN}") in ft2font.FT2Font(str(path)).get_charmap()
    else:
        name = _installed_system_cjk_font()
        has_minus = False   # WenQuanYi Micro Hei has no U+2212 glyph; do not count on the others
    if name is None:
        warnings.warn(
            f"No CJK font for matplotlib: Chinese labels will be drawn as empty boxes. "
            f"Install the font package: pip install {FONT_PACKAGE_PIP_NAME}",
            stacklevel=2,
        )
        return None
    others = [family for family in plt.rcParams["font.sans-serif"] if family != name]
    plt.rcParams["font.sans-serif"] = [name, *others]
    plt.rcParams["axes.unicode_minus"] = has_minus   # ASCII hyphen for negative ticks if the font lacks U+2212
    return name


# The family every figure draws its Chinese with ("Noto Sans SC"), or None with no CJK font at all.
CJK_FONT = use_cjk_font()
