"""The computation-graph walk finds exactly the ops of the two-layer net."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from lectures_code.lecture12.autograd_graph import (
    autograd_graph,
    figure_two_layer_graph,
    two_layer_loss_graph,
)


def test_two_layer_graph_nodes_and_edges():
    nodes, edges = two_layer_loss_graph()
    labels = Counter(n.label.split(" ")[0] for n in nodes)
    assert labels == Counter({"MmBackward0": 2, "ClampBackward1": 1, "SubBackward0": 1, "PowBackward0": 1,
                              "SumBackward0": 1, "w1": 1, "w2": 1, "loss": 1})
    assert len(edges) == len(nodes) - 1   # here the graph is a tree: every node but the loss has one consumer
    by_key = {n.key: n for n in nodes}
    leaf_targets = {by_key[s].label.split()[0]: by_key[d].label for s, d in edges if by_key[s].kind == "leaf"}
    assert leaf_targets == {"w1": "MmBackward0", "w2": "MmBackward0"}


def test_shared_subexpression_is_one_node():
    a = torch.randn(3, requires_grad=True)
    b = a.exp()
    nodes, edges = autograd_graph((b * b).sum())
    assert sum(n.label == "ExpBackward0" for n in nodes) == 1


def test_no_grad_fn_is_a_clear_error():
    with pytest.raises(ValueError, match="no grad_fn"):
        autograd_graph(torch.randn(3).sum())


def test_figure_is_an_svg():
    svg = figure_two_layer_graph()
    assert svg.startswith(b"<?xml") and b"<svg" in svg and b"MmBackward0" in svg
