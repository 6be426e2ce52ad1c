"""Every figure and every notebook plot draws its Chinese with the packaged font, on a machine with no CJK font.

Each check runs in a fresh Python whose matplotlib sees only the fonts matplotlib itself ships (DejaVu,
STIX, ...): the system's fonts, CJK ones included, are taken out of the font list before
`lectures_code` is imported. It draws every figure of `lectures_code.figures.FIGURES` and runs every
notebook page (`docs/notebooks/*.py`, saving each figure it shows), records each "Glyph ... missing
from font(s)" warning, and records which figures drew Chinese text at all. The second run removes
the font package (its import fails, as if pip had never installed it) and must see the empty boxes:
so the first run's silence means the font works, not that nothing was checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lectures_code.figures import FIGURES
from lectures_code.plotting.fonts import FONT_PACKAGE, FONT_PACKAGE_PIP_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO_ROOT / "docs" / "notebooks").glob("*.py"))

pytestmark = pytest.mark.slow

# Runs in the child with cwd = REPO_ROOT. argv: the module to make unimportable ("-" for none), then notebooks.
# Prints one JSON line: the font chosen, the warnings of the set-up, and per drawing
# {"missing": [glyph warnings], "chinese": [Chinese strings drawn]}.
RENDER_WITHOUT_SYSTEM_FONTS = r"""
import io, json, re, runpy, sys, warnings
from pathlib import Path

blocked_module, notebooks = sys.argv[1], sys.argv[2:]
if blocked_module != "-":
    sys.modules[blocked_module] = None   # `import` now raises ImportError, as for an uninstalled package

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.text
from matplotlib import font_manager

# Hide every font that matplotlib did not ship: what is left is a fresh machine's view.
mpl_fonts = Path(matplotlib.get_data_path()).resolve()
font_manager.fontManager.ttflist = [
    f for f in font_manager.fontManager.ttflist if Path(f.fname).resolve().is_relative_to(mpl_fonts)]
font_manager.fontManager._findfont_cached.cache_clear()

CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
chinese = []
text_draw = matplotlib.text.Text.draw
def recording_draw(self, renderer):
    if CJK.search(self.get_text()):
        chinese.append(self.get_text())
    return text_draw(self, renderer)
matplotlib.text.Text.draw = recording_draw

warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from lectures_code.plotting import fonts
result = {"font": fonts.CJK_FONT, "setup_warnings": [str(w.message) for w in caught], "drawings": {}}

def record(name, draw):
    chinese.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw()
    missing = sorted({str(w.message) for w in caught if "missing from font" in str(w.message)})
    result["drawings"][name] = {"missing": missing, "chinese": sorted(set(chinese))}

from lectures_code.figures import FIGURES
for name, draw in FIGURES.items():
    record(name, draw)

def show_saves_every_figure(*args, **kwargs):
    for number in plt.get_fignums():
        plt.figure(number).savefig(io.BytesIO(), format="png")
    plt.close("all")

for notebook in notebooks:
    plt.show = show_saves_every_figure
    def run_notebook(path=notebook):
        runpy.run_path(path, init_globals={"display": print}, run_name="__main__")
        show_saves_every_figure()
    record(Path(notebook).name, run_notebook)

print(json.dumps(result, ensure_ascii=False))
"""


def render_without_system_fonts(*, block_font_package: bool, notebooks: list[Path]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", RENDER_WITHOUT_SYSTEM_FONTS, FONT_PACKAGE if block_font_package else "-",
         *map(str, notebooks)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"rendering failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def with_font_package() -> dict:
    return render_without_system_fonts(block_font_package=False, notebooks=NOTEBOOKS)


@pytest.fixture(scope="module")
def without_font_package() -> dict:
    return render_without_system_fonts(block_font_package=True, notebooks=[])


def test_every_figure_and_notebook_plot_has_every_glyph(with_font_package):
    assert NOTEBOOKS, "no notebook page found under docs/notebooks"
    drawings = with_font_package["drawings"]
    assert set(drawings) == set(FIGURES) | {p.name for p in NOTEBOOKS}
    assert with_font_package["font"] == "Noto Sans SC", with_font_package
    assert with_font_package["setup_warnings"] == []
    missing = {name: d["missing"][:3] for name, d in drawings.items() if d["missing"]}
    assert not missing, f"glyphs missing from the figure font: {missing}"
    # The check has teeth only where Chinese is drawn: most figures and the notebook plots label in Chinese.
    with_chinese = [name for name, d in drawings.items() if d["chinese"]]
    assert len(with_chinese) >= len(drawings) // 2, with_chinese
    assert all(drawings[p.name]["chinese"] for p in NOTEBOOKS)


def test_without_the_font_package_every_chinese_label_is_an_empty_box(with_font_package, without_font_package):
    """The same figures, with the package uninstalled: the set-up warns how to install it, and every
    figure that draws Chinese gets missing-glyph warnings, which the check above would have failed on."""
    assert without_font_package["font"] is None
    [setup_warning] = without_font_package["setup_warnings"]
    assert f"pip install {FONT_PACKAGE_PIP_NAME}" in setup_warning
    for name in FIGURES:
        drew_chinese = with_font_package["drawings"][name]["chinese"]
        missing = without_font_package["drawings"][name]["missing"]
        assert bool(missing) == bool(drew_chinese), (name, drew_chinese[:3], missing[:3])
