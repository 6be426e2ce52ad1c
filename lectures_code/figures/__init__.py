"""Every figure of the notes, by file name -> function returning the file's bytes.

docs/hooks/figures.py calls these at build time, so each figure is drawn by the code it explains.
Imports stay inside the lambdas: building the site only pays for the figures it draws.
"""

from __future__ import annotations

from collections.abc import Callable


def _lecture12_autograd_graph() -> bytes:
    from lectures_code.lecture12.autograd_graph import figure_two_layer_graph

    return figure_two_layer_graph()


def _lecture13(name: str) -> Callable[[], bytes]:
    def draw() -> bytes:
        from lectures_code.figures import lecture13 as figures

        return figures.FIGURES[name]()

    return draw


def _lecture14(name: str) -> Callable[[], bytes]:
    def draw() -> bytes:
        from lectures_code.figures import lecture14 as figures_lecture14

        return figures_lecture14.FIGURES[name]()

    return draw


def _lecture14_detectors(name: str) -> Callable[[], bytes]:
    def draw() -> bytes:
        from lectures_code.figures import lecture14_detectors as figures_detectors

        return figures_detectors.FIGURES[name]()

    return draw


def _lecture15(name: str) -> Callable[[], bytes]:
    def draw() -> bytes:
        from lectures_code.figures import lecture15

        return lecture15.FIGURES[name]()

    return draw


def _lecture13_transfer() -> bytes:
    from lectures_code.lecture13.transfer_learning import figure_transfer_learning

    return figure_transfer_learning()


FIGURES: dict[str, Callable[[], bytes]] = {
    "lecture12-autograd-graph.svg": _lecture12_autograd_graph,
    **{name: _lecture13(name) for name in [
        "lecture13-vision-tasks.png",
        "lecture13-iou-examples.svg",
        "lecture13-selective-search.png",
        "lecture13-box-transform.svg",
        "lecture13-nms.svg",
        "lecture13-rcnn-pipeline.png",
        "lecture13-pr-curve.svg",
        "lecture13-ap-example.svg",
        "lecture13-sliding-window-counts.svg",
    ]},
    "lecture13-transfer-learning.svg": _lecture13_transfer,
    "lecture14-roi-pool-vs-align.png": _lecture14("lecture14-roi-pool-vs-align.png"),
    "lecture14-feature-projection.svg": _lecture14("lecture14-feature-projection.svg"),
    **{name: _lecture14_detectors(name) for name in [
        "lecture14-anchors.png",
        "lecture14-rpn-proposals.png",
        "lecture14-fpn-levels.png",
        "lecture14-detections.png",
        "lecture14-speed-accuracy.svg",
        "lecture14-proposal-scaling.svg",
    ]},
    **{name: _lecture15(name) for name in [
        "lecture15-unpooling.svg",
        "lecture15-transposed-conv-1d.svg",
        "lecture15-convolution-matrix.svg",
        "lecture15-checkerboard.png",
        "lecture15-interpolation.png",
    ]},
}
