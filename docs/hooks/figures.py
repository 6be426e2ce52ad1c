"""MkDocs hook: draw every figure of the notes with the project's own code at build time.

`lectures_code.figures.FIGURES` maps a file name to a function returning SVG/PNG bytes; each
becomes `figures/<name>` in the site, so pages write `![...](../figures/<name>)`.
"""

from __future__ import annotations

import time

from mkdocs.structure.files import File

from lectures_code.figures import FIGURES


def on_files(files, config):
    for name, draw in FIGURES.items():
        start = time.perf_counter()
        content = draw()
        files.append(File.generated(config, f"figures/{name}", content=content))
        elapsed = time.perf_counter() - start
        if elapsed > 5:
            print(f"figures hook: {name} took {elapsed:.1f} s")
    return files
