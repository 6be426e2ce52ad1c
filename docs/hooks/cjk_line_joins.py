"""MkDocs hook: a source line break between two Chinese characters leaves no space on the page.

Markdown keeps the line break of a wrapped paragraph in the HTML ("...目标\\n检测..."), and the
browser shows every line break as a space: right for English words, a stray gap in Chinese. This
hook works on each page's HTML after Markdown (and after mkdocs-jupyter for the notebook pages, whose
Markdown cells another renderer converts), before the search index reads it, and removes a
whitespace run that holds exactly one line break when the characters on both sides are CJK
(ideographs, CJK and full-width punctuation, and the quotes and dashes of Chinese text).

Kept as written: spaces inside a line (the author typed them), breaks next to a Latin letter, digit
or symbol ("中文\\nPyTorch"), everything inside <pre>, <code>, <kbd>, <samp>, <script>, <style>,
<textarea> and the math that KaTeX renders (class "arithmatex"), and breaks between block elements
(list items, table cells, paragraphs). Inline elements (<a>, <strong>, <em>, <span>, ...) are
transparent: "链接</a>\\n文字" is a join like any other.
"""

from __future__ import annotations

import re

CJK = (
    "\u2e80-\u2fdf"          # CJK radicals, Kangxi radicals
    "\u3000-\u303f"          # CJK symbols and punctuation: 、。「」《》
    "\u3040-\u30ff"          # kana
    "\u3400-\u4dbf"          # CJK extension A
    "\u4e00-\u9fff"          # CJK unified ideographs
    "\uf900-\ufaff"          # CJK compatibility ideographs
    "\ufe30-\ufe4f"          # CJK compatibility forms
    "\uff00-\uffef"          # full-width forms: ，：；（）！？
    "\U00020000-\U0003134f"  # CJK extensions B-G
    "\u201c\u201d\u2018\u2019\u2014\u2026\u00b7"   # “”‘’—…· as Chinese text uses them
)
# Only a run with one line break: a blank line (two breaks) is never inside a rendered paragraph.
LINE_JOIN = re.compile(rf"(?<=[{CJK}])[ \t]*\n[ \t]*(?=[{CJK}])")

# Transparent for the join: the text on both sides flows on one line.
INLINE = {"a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "del", "dfn", "em", "i", "ins", "kbd",
          "mark", "q", "ruby", "rb", "rp", "rt", "s", "samp", "small", "span", "strong", "sub", "sup",
          "time", "u", "var"}
# Their text is shown as written: never edited (their characters still count as neighbours).
VERBATIM = {"pre", "code", "kbd", "samp"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
KATEX = re.compile(r"""\bclass\s*=\s*["'][^"']*\barithmatex\b""", re.I)

TOKEN = re.compile(
    r"(?P<comment><!--.*?-->)"
    r"|(?P<raw><(?P<raw_name>script|style|textarea)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>.*?</(?P=raw_name)\s*>)"
    r"|(?P<tag></?(?P<name>[A-Za-z][\w:-]*)(?:[^>\"']|\"[^\"]*\"|'[^']*')*>)"
    r"|(?P<text>[^<]+|<)",
    re.S | re.I,
)


def join_cjk_lines(html: str) -> str:
    """Remove the line breaks (and the indentation around them) that stand between two CJK characters."""
    tokens = list(TOKEN.finditer(html))
    out = [m.group(0) for m in tokens]
    open_elements: list[tuple[str, bool]] = []   # (tag name, verbatim) of each element we are inside
    run: list[tuple[int, bool]] = []             # text tokens of the current inline run: (index, editable)

    def close_run() -> None:
        _join_in_run(out, run)
        run.clear()

    for index, m in enumerate(tokens):
        if m.group("comment"):
            continue                              # renders nothing: the text around it is adjacent
        if m.group("raw"):
            close_run()
            continue
        if m.group("text"):
            run.append((index, not any(verbatim for _, verbatim in open_elements)))
            continue
        tag, name = m.group("tag"), m.group("name").lower()
        if name not in INLINE:
            close_run()                           # a block or a void element breaks the line anyway
        if tag.startswith("</"):
            for depth in range(len(open_elements) - 1, -1, -1):
                if open_elements[depth][0] == name:
                    del open_elements[depth:]
                    break
        elif name not in VOID and not tag.endswith("/>"):
            open_elements.append((name, name in VERBATIM or bool(KATEX.search(tag))))
    close_run()
    return "".join(out)


def _join_in_run(out: list[str], run: list[tuple[int, bool]]) -> None:
    """Within one inline run (text tokens that render on one line), delete each LINE_JOIN whose
    characters all lie in editable tokens."""
    if not run:
        return
    text = "".join(out[index] for index, _ in run)
    if "\n" not in text:
        return
    starts, position = [], 0                      # where each token of the run starts in `text`
    for index, _ in run:
        starts.append(position)
        position += len(out[index])
    deleted: list[set[int]] = [set() for _ in run]   # per token: offsets to delete
    for m in LINE_JOIN.finditer(text):
        covered = [(k, offset) for k, start in enumerate(starts)
                   for offset in range(max(m.start(), start), min(m.end(), start + len(out[run[k][0]])))]
        if all(run[k][1] for k, _ in covered):
            for k, offset in covered:
                deleted[k].add(offset - starts[k])
    for k, (index, _) in enumerate(run):
        if deleted[k]:
            out[index] = "".join(c for offset, c in enumerate(out[index]) if offset not in deleted[k])


def on_page_content(html, page, config, files):
    return join_cjk_lines(html)
