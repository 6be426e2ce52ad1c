"""MkDocs hook: serve KaTeX and mermaid from node_modules (npm ci) so the site needs no CDN.

The files are added to the build straight from node_modules/; nothing is copied into docs/.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
VENDORED = {
    # site path prefix          -> folder in node_modules, and the files/folders taken from it
    "assets/vendor/katex": (ROOT / "node_modules/katex/dist", ["katex.min.js", "katex.min.css",
                                                               "contrib/auto-render.min.js", "fonts"]),
    "assets/vendor/mermaid": (ROOT / "node_modules/mermaid/dist", ["mermaid.min.js"]),
}


def on_files(files, config):
    for prefix, (source_dir, entries) in VENDORED.items():
        if not source_dir.is_dir():
            raise PluginError(
                f"{source_dir} is missing: run `npm ci` (or `make setup`) to install the vendored JavaScript"
            )
        for entry in entries:
            path = source_dir / entry
            paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for p in paths:
                rel = p.relative_to(source_dir).as_posix()
                files.append(File.generated(config, f"{prefix}/{rel}", abs_src_path=str(p)))
    return files
