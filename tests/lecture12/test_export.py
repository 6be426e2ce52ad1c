"""Lecture 12: torch.export captures a model ahead of time; the program runs again after a save and load."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lectures_code.lecture12.custom_modules import TwoLayerNet
from lectures_code.lecture12.export_example import CondBranch, PythonBranch, export_two_layer_net, save_and_reload


@pytest.fixture(scope="module")
def net_and_program():
    torch.manual_seed(0)
    net = TwoLayerNet(20, 8, 3)
    return net, export_two_layer_net(net, torch.randn(5, 20))


@pytest.mark.parametrize("batch", [2, 5, 17])
def test_exported_program_equals_the_module_for_any_batch(net_and_program, batch):
    net, exported = net_and_program
    x = torch.randn(batch, 20)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), net(x))


def test_exported_graph_is_only_aten_operations(net_and_program):
    _, exported = net_and_program
    calls = [node.target for node in exported.graph.nodes if node.op == "call_function"]
    assert calls and all(isinstance(t, torch._ops.OpOverload) and t.namespace == "aten" for t in calls)
    parameters = {spec.target for spec in exported.graph_signature.input_specs if spec.kind.name == "PARAMETER"}
    assert parameters == {"linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"}


def test_exported_program_rejects_a_wrong_feature_size(net_and_program):
    _, exported = net_and_program
    with pytest.raises(Exception, match="20"):        # only dimension 0 was declared dynamic
        exported.module()(torch.randn(5, 21))


def test_save_and_load_round_trip(net_and_program, tmp_path):
    net, exported = net_and_program
    runnable = save_and_reload(exported, tmp_path / "two_layer_net.pt2")
    x = torch.randn(7, 20)
    with torch.no_grad():
        torch.testing.assert_close(runnable(x), net(x), rtol=0, atol=0)


def test_a_saved_program_loads_without_the_model_code(net_and_program, tmp_path):
    """A fresh Python process in which `lectures_code` cannot be imported still loads and runs the file."""
    net, exported = net_and_program
    torch.export.save(exported, tmp_path / "net.pt2")
    x = torch.randn(4, 20)
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys; sys.modules['lectures_code'] = None\n"    # any import of our package now fails
        "import torch\n"
        "program = torch.export.load(sys.argv[1] + '/net.pt2')\n"
        "x = torch.load(sys.argv[1] + '/x.pt', weights_only=True)\n"
        "torch.save(program.module()(x), sys.argv[1] + '/out.pt')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=300, cwd=tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "out.pt", weights_only=True), net(x), rtol=0, atol=0)


def _branch_inputs(prev_loss):
    g = torch.Generator().manual_seed(1)
    h, w2a, w2b = torch.randn(4, 5, generator=g), torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    return h, w2a, w2b, torch.tensor(prev_loss)


def test_a_python_if_on_a_tensor_runs_eagerly_but_cannot_be_exported():
    h, w2a, w2b, prev_loss = _branch_inputs(1.0)
    torch.testing.assert_close(PythonBranch()(h, w2a, w2b, prev_loss), h.mm(w2a))
    with pytest.raises(Exception, match="data-dependent"):
        torch.export.export(PythonBranch(), (h, w2a, w2b, prev_loss))


def test_torch_cond_exports_both_branches():
    exported = torch.export.export(CondBranch(), _branch_inputs(1.0))
    assert "cond" in exported.graph_module.code
    for prev_loss, weight in [(1.0, 1), (100.0, 2)]:
        inputs = _branch_inputs(prev_loss)
        torch.testing.assert_close(exported.module()(*inputs), inputs[0].mm(inputs[weight]))
        torch.testing.assert_close(CondBranch()(*inputs), inputs[0].mm(inputs[weight]))
