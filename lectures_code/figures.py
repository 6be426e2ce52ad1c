"""Every figure of the notes, by file name -> function returning the file's bytes.

docs/hooks/figures.py calls these at build time, so each figure is drawn by the code it explains.
Imports stay inside the lambdas: building the site only pays for the figures it draws.
"""

from __future__ import annotations

from collections.abc import Callable


def _lecture12_autograd_graph() -> bytes:
    from lectures_code.lecture12.autograd_graph import figure_two_layer_graph

    return figure_two_layer_graph()


FIGURES: dict[str, Callable[[], bytes]] = {
    "lecture12-autograd-graph.svg": _lecture12_autograd_graph,
}
