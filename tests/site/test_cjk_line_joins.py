"""A wrapped Chinese line leaves no stray space: docs/hooks/cjk_line_joins.py on tricky Markdown, then the built site.

The unit tests render Markdown with the site's own Markdown extensions (read from mkdocs.yml) and pass
the HTML through the hook. The site test looks at every built page with its own, simpler detector
(regular expressions, not the hook's tokenizer): a line break between two CJK characters outside
code, with only inline tags between them, is a join the reader sees as a space.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HOOK_PATH = REPO_ROOT / "docs" / "hooks" / "cjk_line_joins.py"

markdown = pytest.importorskip("markdown")


def _load_hook():
    spec = importlib.util.spec_from_file_location("cjk_line_joins", HOOK_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()


@pytest.fixture(scope="module")
def site_markdown():
    """Markdown -> HTML with exactly the extensions and options of mkdocs.yml."""
    from mkdocs.config import load_config

    config = load_config(str(REPO_ROOT / "mkdocs.yml"))

    def render(source: str) -> str:
        md = markdown.Markdown(extensions=config["markdown_extensions"], extension_configs=config["mdx_configs"])
        return md.convert(source)

    return render


# The detector of the site test, written independently of the hook.
CJK_CHAR = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef\u201c\u201d\u2018\u2019\u2014\u2026]"
INLINE_TAGS = "a|abbr|b|strong|em|i|span|sup|sub|mark|del|ins|s|small|u|q|cite|dfn|time|var"


def visible_line_joins(html: str) -> list[str]:
    """Each place where a line break stands between two CJK characters in rendered text (not code)."""
    html = re.sub(r"(?is)<(script|style|pre|code|kbd|samp|textarea)\b.*?</\1\s*>", "\x00", html)
    html = re.sub(r"(?s)<!--.*?-->", "", html)
    html = re.sub(rf"(?i)</?(?:{INLINE_TAGS})\b[^>]*>", "", html)   # inline tags: the text flows on
    html = re.sub(r"<[^>]*>", "\x00", html)                          # any other tag breaks the line
    return [html[max(m.start() - 8, 0):m.end() + 8] for m in re.finditer(rf"{CJK_CHAR}[ \t]*\n[ \t]*{CJK_CHAR}", html)]


def text_of(html: str) -> str:
    return re.sub(r"<[^>]*>", "", html)


def test_the_detector_sees_what_markdown_does_to_a_wrapped_chinese_paragraph(site_markdown):
    """Without the hook, Python-Markdown keeps the break: this is the stray space the site test looks for."""
    html = site_markdown("目标检测要回答两个问题：\n图中有什么，它们在哪里。")
    [join] = visible_line_joins(html)
    assert "问题：\n图中" in join
    assert visible_line_joins(hook.join_cjk_lines(html)) == []


@pytest.mark.parametrize(
    ("source", "expected_text"),
    [
        ("第一行\n第二行", "第一行第二行"),
        ("句号。\n下一句，\n逗号（括号）\n之后", "句号。下一句，逗号（括号）之后"),
        ("称为“交并比”\n（IoU）", "称为“交并比”（IoU）"),
        ("两阶段——\n先提候选框", "两阶段——先提候选框"),
        ("**粗体**\n正文", "粗体正文"),
        ("正文\n*斜体*", "正文斜体"),
        ("见[这个\n链接](https://example.org/)\n之后", "见这个链接之后"),
        ("- 第一项\n  续行\n- 第二项\n  续行", "\n第一项续行\n第二项续行\n"),
        ("1. 步骤一\n   的续行\n2. 步骤二", "\n步骤一的续行\n步骤二\n"),
        ('!!! note "注意"\n    注释第一行\n    注释第二行', "\n注意\n注释第一行注释第二行\n"),
        ('??? note "测量方法"\n    测量在\n    同一台机器上', "\n测量方法\n测量在同一台机器上\n"),
        ("<div markdown>\n块内第一行\n块内第二行\n</div>", "\n块内第一行块内第二行\n"),
        ("注释<!-- 作者的话 -->\n之后", "注释之后"),
    ],
    ids=["paragraph", "punctuation", "quotes", "dash", "strong", "emphasis", "link-spanning-lines", "bullet-list",
         "numbered-list", "admonition", "details", "md-in-html", "comment"],
)
def test_chinese_line_joins_disappear(site_markdown, source, expected_text):
    html = hook.join_cjk_lines(site_markdown(source))
    assert text_of(html) == expected_text, html
    assert visible_line_joins(html) == []


@pytest.mark.parametrize(
    "source",
    [
        "中文 中文",                                 # a space the author typed inside a line
        "deep\nlearning",                           # English words keep their join
        "使用\nPyTorch\n训练",                       # Chinese next to Latin: the join stays a space
        "交并比\n(IoU)",
        "精度 0.5\n时",
        "第一行  \n第二行",                          # a hard break (<br>) stays a break
        "见脚注[^1]\n正文\n\n[^1]: 脚注正文",
        "$\\text{中}\n\\text{文}$ 与公式",          # KaTeX source is shown as written
        "$$\n\\text{中}\n\\text{文}\n$$",
    ],
    ids=["author-space", "english", "mixed", "mixed-parenthesis", "digits", "hard-break", "footnote",
         "inline-math", "block-math"],
)
def test_other_whitespace_is_kept(site_markdown, source):
    html = site_markdown(source)
    assert hook.join_cjk_lines(html) == html


@pytest.mark.parametrize(
    "source",
    [
        "```python\n# 第一行注释\n# 第二行注释\nx = '中\\n文'\n```",
        "```text\n中文\n中文\n```",
        "    缩进代码\n    第二行",
        "`行内\n代码` 之后",
        "| 列一 | 列二 |\n| --- | --- |\n| 中 | 文 |\n| 表格 | 单元格 |",
        "- 第一项\n- 第二项",
        "段落一\n\n段落二",
        "<script>var s = '中\n文';</script>",
        "```mermaid\ngraph LR\n  A[输入] --> B[输出]\n  B --> C[损失]\n```",
    ],
    ids=["fenced-python", "fenced-text", "indented-code", "inline-code", "table", "list-items", "paragraphs",
         "script", "mermaid"],
)
def test_code_tables_and_block_boundaries_are_untouched(site_markdown, source):
    html = site_markdown(source)
    assert hook.join_cjk_lines(html) == html


def test_only_whitespace_is_removed_and_attributes_are_left_alone():
    html = ('<p title="标题\n第二行">正文\n<a href="#" data-x=\'a>b\'>链接</a>\n继续<br>\n换行</p>\n'
            '<pre><code>代码\n代码</code></pre>\n<p>又一段\n文字 &amp; 符号</p>')
    joined = hook.join_cjk_lines(html)
    assert joined == ('<p title="标题\n第二行">正文<a href="#" data-x=\'a>b\'>链接</a>继续<br>\n换行</p>\n'
                      '<pre><code>代码\n代码</code></pre>\n<p>又一段文字 &amp; 符号</p>')


@pytest.mark.site
def test_built_site_has_no_chinese_line_join_spaces(built_site):
    pages = sorted(built_site.rglob("*.html"))
    chinese_pages = [p for p in pages if len(re.findall(CJK_CHAR, p.read_text(encoding="utf-8"))) > 500]
    assert len(chinese_pages) >= 5, [p.relative_to(built_site).as_posix() for p in chinese_pages]
    found = {p.relative_to(built_site).as_posix(): visible_line_joins(p.read_text(encoding="utf-8"))[:5]
             for p in pages}
    assert not {page: joins for page, joins in found.items() if joins}
