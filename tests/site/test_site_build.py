"""The strict build works offline, runs its notebooks cleanly, and pages show only included code."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
LECTURE_PAGES = sorted((DOCS / "lectures").glob("lecture-*.md"))

pytestmark = pytest.mark.site


def _html_files(site: Path):
    return sorted(site.rglob("*.html"))


def test_every_lecture_page_is_built(built_site):
    for n in range(12, 19):
        assert (built_site / "lectures" / f"lecture-{n}" / "index.html").is_file()
    assert (built_site / "notebooks" / "lecture12_training_variants" / "index.html").is_file()


def test_nothing_is_loaded_from_another_host(built_site):
    remote = re.compile(r"""<(script|img|iframe)\b[^>]*\bsrc=["']?(https?:)?//""", re.I)
    remote_css = re.compile(
        r"""<link\b[^>]*rel=["']?(stylesheet|preload|modulepreload|icon)[^>]*href=["']?(https?:)?//""", re.I
    )
    offenders = []
    for page in _html_files(built_site):
        text = page.read_text(encoding="utf-8")
        offenders += [f"{page}: {m.group(0)[:120]}" for m in remote.finditer(text)]
        offenders += [f"{page}: {m.group(0)[:120]}" for m in remote_css.finditer(text)]
    for sheet in built_site.rglob("*.css"):
        text = sheet.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{sheet}: {m}" for m in re.findall(r"""(@import\s+url\(["']?https?://[^)]*|url\(["']?https?://[^)]*)""",
                                                          text)]
    assert not offenders, "remote resources:\n" + "\n".join(offenders[:20])


def test_vendored_katex_and_mermaid_are_served(built_site):
    page = (built_site / "lectures" / "lecture-12" / "index.html").read_text(encoding="utf-8")
    for asset in ["assets/vendor/katex/katex.min.js", "assets/vendor/katex/katex.min.css",
                  "assets/vendor/mermaid/mermaid.min.js", "assets/javascripts/katex-init.js"]:
        assert asset in page
        assert (built_site / asset).stat().st_size > 1000 or asset.endswith("init.js")
    assert list((built_site / "assets/vendor/katex/fonts").glob("*.woff2"))
    assert 'class="mermaid"' in page


def _notebook_outputs(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(r'<div class="jp-OutputArea-output[^"]*"[^>]*>(.*?)</div>', text, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", b)) for b in blocks]


def test_notebook_outputs_have_no_traceback_or_warning(built_site):
    pages = list((built_site / "notebooks").rglob("index.html"))
    assert pages
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r'<div[^>]*data-mime-type="application/vnd.jupyter.stderr"', text), \
            f"{page}: a cell wrote to stderr"
        for output in _notebook_outputs(page):
            for word in ("Traceback", "Error", "Warning", "warn("):
                assert word not in output, f"{page}: {word!r} in output:\n{output[:500]}"
        assert len(re.findall(r'<img[^>]*src="data:image/png', text)) >= 2, f"{page}: expected the plotted figures"


def test_notebook_is_downloadable(built_site):
    page = (built_site / "notebooks/lecture12_training_variants/index.html").read_text(encoding="utf-8")
    assert re.search(r'<a href="[^"]*/lecture12_training_variants\.py"[^>]*download', page)
    assert (built_site / "notebooks/lecture12_training_variants/lecture12_training_variants.py").is_file()


FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
SNIPPET = re.compile(r'^--8<-- "(lectures_code|benchmarks)/[\w/]+\.py:[\w-]+"$')


@pytest.mark.parametrize("page", LECTURE_PAGES, ids=lambda p: p.stem)
def test_python_code_on_lecture_pages_is_included_from_lectures_code(page):
    """A python block on a lecture page is exactly one snippet include of lectures_code (or of a benchmark
    script that runs it), never pasted."""
    for m in FENCE.finditer(page.read_text(encoding="utf-8")):
        if m.group("lang") in ("mermaid", "bash", "text", "console"):
            continue
        lines = [line.strip() for line in m.group("body").splitlines() if line.strip()]
        assert m.group("lang") in ("python", "py"), f"{page.name}: code block in {m.group('lang')!r}"
        assert len(lines) == 1 and SNIPPET.match(lines[0]), f"{page.name}: pasted code block:\n{m.group(0)[:300]}"


def test_lecture12_code_blocks_match_the_package_source(built_site):
    """The rendered blocks are the current source: each line shown exists in lectures_code."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO_ROOT / "lectures_code").rglob("*.py"))
    page = (built_site / "lectures/lecture-12/index.html").read_text(encoding="utf-8")
    blocks = re.findall(r'<div class="language-python highlight"><pre>(.*?)</pre>', page, re.S)
    assert len(blocks) >= 15
    for block in blocks:
        code = html.unescape(re.sub(r"<[^>]+>", "", block))
        for line in code.splitlines():
            assert line.strip() in source, f"line not in lectures_code: {line!r}"


def test_lecture12_page_contents(built_site):
    page = (built_site / "lectures/lecture-12/index.html").read_text(encoding="utf-8")
    for needle in ["torch.compile", "torch.export", "DataLoader", "num_workers", "save_for_backward",
                   "figures/lecture12-autograd-graph.svg", 'data-demo="lecture12"', "TensorFlow"]:
        assert needle in page, needle
    assert (built_site / "figures/lecture12-autograd-graph.svg").read_bytes().count(b"MmBackward0") >= 2


def test_search_index_segments_chinese_words(built_site):
    """jieba + the user dictionary put course terms from inside sentences into the index as words."""
    index = json.loads((built_site / "search/search_index.json").read_text(encoding="utf-8"))
    assert index["config"]["lang"] == ["zh"]
    lecture12 = " ".join(d["text"] for d in index["docs"] if d["location"].startswith("lectures/lecture-12/"))
    # Material inserts U+200B between jieba tokens: a term is findable when it stands as one token.
    tokens = set(re.split(r"[\u200b\s]+", lecture12))
    for term in ["计算图", "累加", "优化器", "静态图"]:
        assert term in tokens, term
