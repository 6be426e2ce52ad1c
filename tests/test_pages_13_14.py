"""The Lecture 13 and 14 pages read as lecture notes: Chinese prose, one source line per paragraph,
no words about the authors' machines, standard terms, and the order of the slides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = {13: ROOT / "docs" / "lectures" / "lecture-13.md", 14: ROOT / "docs" / "lectures" / "lecture-14.md"}
BANNED = ["对拍", "本机", "借到", "这台机器", "我们的机器"]
ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'-]*(?:[ ,.;:]+[A-Za-z][A-Za-z'-]*){4,}")
NOT_PROSE = re.compile(r"^(#|\||- |\d+\. |<|!!!|\?\?\?|--8<--|\$\$|```|flowchart|    )")


def source_lines(text: str) -> list[str]:
    """The page's lines outside fenced code blocks and display math."""
    out, fenced = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


@pytest.mark.parametrize("lecture", sorted(PAGES))
def test_no_environment_words_or_contest_slang(lecture):
    text = PAGES[lecture].read_text(encoding="utf-8")
    for word in BANNED:
        assert word not in text, f"lecture {lecture}: {word!r}"


@pytest.mark.parametrize("lecture", sorted(PAGES))
def test_no_english_sentences(lecture):
    for line in source_lines(PAGES[lecture].read_text(encoding="utf-8")):
        if "--8<--" in line or "<!-- table:" in line:
            continue
        prose = re.sub(r"`[^`]*`|\$[^$]*\$|\*[^*]*\*|<[^>]*>|!\[[^\]]*\]\([^)]*\)", " ", line)
        assert not ENGLISH_RUN.search(prose), f"lecture {lecture}: English in {line.strip()[:80]!r}"


@pytest.mark.parametrize("lecture", sorted(PAGES))
def test_every_paragraph_is_one_source_line(lecture):
    lines = source_lines(PAGES[lecture].read_text(encoding="utf-8"))
    in_math = False
    previous_is_text = False
    for line in lines:
        if line.strip() == "$$":
            in_math = not in_math
            previous_is_text = False
            continue
        is_text = bool(line.strip()) and not in_math and not NOT_PROSE.match(line)
        assert not (is_text and previous_is_text), f"lecture {lecture}: wrapped paragraph at {line[:60]!r}"
        previous_is_text = is_text


def test_lecture14_follows_the_slides():
    """Fast R-CNN, RoI Pool/Align, Faster R-CNN, then multi-scale (FPN), then RetinaNet and FCOS."""
    headings = [line for line in PAGES[14].read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    order = ["## Fast R-CNN", "## RoI Pool", "## RoI Align", "## Faster R-CNN", "## 多尺度", "## 单阶段检测器",
             "### RetinaNet", "### FCOS", "## 检测器对比"]
    positions = [next(i for i, h in enumerate(headings) if h.startswith(prefix)) for prefix in order]
    assert positions == sorted(positions)
    fpn_code = PAGES[14].read_text(encoding="utf-8").index('--8<-- "lectures_code/detection/backbones.py:fpn"')
    assert fpn_code < PAGES[14].read_text(encoding="utf-8").index("### RetinaNet")
