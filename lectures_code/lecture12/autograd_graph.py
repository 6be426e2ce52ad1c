"""Draw the graph autograd recorded, by walking ``grad_fn.next_functions`` back from a tensor."""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GraphNode:
    key: int          # id() of the grad_fn / tensor, unique within one graph
    label: str        # e.g. "MmBackward0" or "w1 [1000, 100]"
    kind: str         # "op" (a backward function), "leaf" (a tensor with requires_grad), "output"


# --8<-- [start:walk_graph]
def autograd_graph(output: torch.Tensor, names: dict[int, str] | None = None):
    """Nodes and edges of the backward graph that ends in ``output``.

    Each backward function (``output.grad_fn``, then its ``next_functions``...) is a node; an
    ``AccumulateGrad`` node is shown as the leaf tensor whose ``.grad`` it fills. Edges point
    from input to output, the direction of the forward pass.
    ``names`` maps id(leaf tensor) -> display name.
    """
    if output.grad_fn is None:
        raise ValueError("this tensor has no grad_fn: nothing recorded (does any input require grad?)")
    names = names or {}
    nodes: dict[int, GraphNode] = {}
    edges: set[tuple[int, int]] = set()

    def visit(fn) -> int:
        if hasattr(fn, "variable"):                      # AccumulateGrad: stands for a leaf tensor
            leaf = fn.variable
            label = f"{names.get(id(leaf), 'leaf')} {list(leaf.shape)}"
            nodes[id(fn)] = GraphNode(id(fn), label, "leaf")
            return id(fn)
        if id(fn) in nodes:
            return id(fn)
        nodes[id(fn)] = GraphNode(id(fn), type(fn).__name__, "op")
        for parent, _ in fn.next_functions:
            if parent is not None:                       # None: an input that needs no gradient
                edges.add((visit(parent), id(fn)))
        return id(fn)

    root = visit(output.grad_fn)
    nodes[id(output)] = GraphNode(id(output), f"loss {list(output.shape)}", "output")
    edges.add((root, id(output)))
    return list(nodes.values()), sorted(edges)
# --8<-- [end:walk_graph]


def _depths(nodes, edges) -> dict[int, int]:
    """Longest distance from a leaf: gives each node its row in the drawing."""
    parents: dict[int, list[int]] = {n.key: [] for n in nodes}
    for src, dst in edges:
        parents[dst].append(src)
    depth: dict[int, int] = {}

    def get(key: int) -> int:
        if key not in depth:
            depth[key] = 1 + max((get(p) for p in parents[key]), default=-1)
        return depth[key]

    for n in nodes:
        get(n.key)
    # Pull each leaf down to just above the first op that uses it, so its arrow stays short.
    for n in nodes:
        children = [depth[dst] for src, dst in edges if src == n.key]
        if n.kind == "leaf" and children:
            depth[n.key] = min(children) - 1
    return depth


def draw_autograd_graph(nodes, edges, ax=None):
    """Layered drawing with matplotlib: leaves at the top, the loss at the bottom."""
    import matplotlib.pyplot as plt

    depth = _depths(nodes, edges)
    rows: dict[int, list[GraphNode]] = {}
    for n in sorted(nodes, key=lambda n: n.label):
        rows.setdefault(depth[n.key], []).append(n)
    position = {}
    for d, row in rows.items():
        for i, n in enumerate(row):
            position[n.key] = ((i + 1) / (len(row) + 1), -d)

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 1.1 * (len(rows) + 1)))
    colours = {"leaf": "#c6e2ff", "op": "#ffe2b3", "output": "#c8f0c8"}
    for src, dst in edges:
        (x0, y0), (x1, y1) = position[src], position[dst]
        ax.annotate("", xy=(x1, y1 + 0.25), xytext=(x0, y0 - 0.25),
                    arrowprops=dict(arrowstyle="->", color="#555"))
    for n in nodes:
        x, y = position[n.key]
        ax.text(x, y, n.label, ha="center", va="center", fontsize=10, family="monospace",
                bbox=dict(boxstyle="round,pad=0.4", fc=colours[n.kind], ec="#333"))
    ax.set_xlim(0, 1)
    ax.set_ylim(-max(rows) - 0.6, 0.6)
    ax.axis("off")
    return ax


def two_layer_loss_graph():
    """The graph of the slides' two-layer net: y_pred = relu(x @ w1) @ w2, loss = sum((y_pred - y)^2)."""
    x, y = torch.randn(64, 1000), torch.randn(64, 10)
    w1 = torch.randn(1000, 100, requires_grad=True)
    w2 = torch.randn(100, 10, requires_grad=True)
    loss = (x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum()
    return autograd_graph(loss, names={id(w1): "w1", id(w2): "w2"})


def figure_two_layer_graph() -> bytes:
    """SVG of the two-layer net's autograd graph (used on the Lecture 12 page)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes, edges = two_layer_loss_graph()
    ax = draw_autograd_graph(nodes, edges)
    buffer = io.StringIO()
    ax.figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(ax.figure)
    return buffer.getvalue().encode()
