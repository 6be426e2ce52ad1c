"""MkDocs hook: replace `<!-- table:NAME -->` in a page with a Markdown table built from recorded results.

`lectures_code.tables.TABLES` maps NAME to a function returning the table's Markdown, read from the
JSON files that the training/evaluation commands write (lectures_code/results/*.json): the JSON is the one source
of truth, the page never holds a hand-copied number.
"""

from __future__ import annotations

import re

from mkdocs.exceptions import PluginError

from lectures_code.tables import TABLES

MARKER = re.compile(r"<!-- table:([\w-]+) -->")


def on_page_markdown(markdown, page, config, files):
    def render(match: re.Match) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise PluginError(f"{page.file.src_uri}: unknown table {name!r}; known: {sorted(TABLES)}")
        return TABLES[name]()

    return MARKER.sub(render, markdown)
