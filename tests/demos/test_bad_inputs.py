"""Every handler of every demo, called directly with NaN, +/-inf, out-of-range, wrong-type and empty values in
each of its inputs: it answers (a figure, or a message saying what is wrong), it never raises, and it never
falls back to its "something failed" message. Gradio's own checks (types, slider ranges, choices) are not in
the way here, so every value reaches our checks; tests/site/test_server.py sends the same through HTTP.
"""

from __future__ import annotations

import math

import pytest
from matplotlib.figure import Figure

from lectures_code.demos import lecture12_training as lecture12
from lectures_code.demos import lecture13_boxes as boxes
from lectures_code.demos import lecture13_detector as detector13
from lectures_code.demos import lecture13_selective_search as selective_search
from lectures_code.demos import lecture14_detector as detector14
from lectures_code.demos import lecture14_roi as roi

BAD = "**输入有误：**"
BAD_VALUES = [math.nan, math.inf, -math.inf, 1e12, -1e12, "abc", [1, 2], {"x": 1}, None, ""]

# handler -> inputs that work (cheap ones: a few steps, the small canvas, the fastest detector)
HANDLERS = {
    "lecture12.train": (lecture12.train, ["autograd", 1e-6, 5, 0]),
    "lecture13.iou": (boxes.iou_playground, [20, 30, 120, 110, 70, 60, 170, 160]),
    "lecture13.nms": (boxes.nms_playground, [0, 0.7, 3]),
    "lecture13.map": (boxes.map_playground, [0, 0.5, 0.0, 0.15]),
    "lecture13.selective_search": (selective_search.propose, ["数字画布 (digit canvas)", None, "single", 5]),
    "lecture13.detector": (detector13.run_detector, ["canvas", 0, None, "单目标检测器 (single-object)", 0.5, 0.5, 0]),
    "lecture14.roi": (roi.roi_playground, [10, 20, 91, 77, "1/8", 2, 2, True]),
    "lecture14.detector": (detector14.run_detector, ["canvas", None, 0, None, "FCOS", 0.3, 0.5, 100, False, 20, False,
                                                     0, 64, 64]),
}
# inputs the handler ignores with the valid ones around them: the upload and the sketch, when the source is a
# test canvas. Everything else is checked.
IGNORED = {("lecture13.selective_search", 1), ("lecture13.detector", 2), ("lecture14.detector", 1),
           ("lecture14.detector", 3)}
# None is a valid "unticked" for the detector's two checkboxes
ACCEPTED_NONE = {("lecture14.detector", 8), ("lecture14.detector", 10)}


def _answers(name: str, position: int, value):
    handler, good = HANDLERS[name]
    return handler(*good[:position], value, *good[position + 1:])


@pytest.mark.parametrize("name", list(HANDLERS))
def test_the_valid_inputs_work(name):
    handler, good = HANDLERS[name]
    figure, message, *_ = handler(*good)
    assert isinstance(figure, Figure), message


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
@pytest.mark.parametrize("name, position", [(n, i) for n, (_, good) in HANDLERS.items() for i in range(len(good))])
def test_a_bad_value_in_any_input_gets_a_message(name, position, value):
    figure, message, *rest = _answers(name, position, value)
    assert isinstance(message, str) and message
    assert not message.startswith("**出错了"), message  # a failure inside the handler, not a refusal
    if (name, position) in IGNORED or (value is None and (name, position) in ACCEPTED_NONE):
        assert isinstance(figure, Figure) or message.startswith(BAD), message
    else:
        assert figure is None and message.startswith(BAD), message
        assert all(r == [] for r in rest)  # no table rows


@pytest.mark.parametrize("value", [*BAD_VALUES, "compile", "no-such-variant"], ids=repr)
def test_the_learning_rate_follows_only_a_listed_variant(value):
    update = lecture12.default_learning_rate(value)
    assert update == {"__type__": "update"}  # the field is left as it is


def test_the_learning_rate_follows_the_variant():
    for name in lecture12.VARIANTS:
        assert lecture12.default_learning_rate(name) == lecture12.EXAMPLES[name].learning_rate


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_the_detector_controls_hide_for_an_unknown_detector(value):
    updates = detector14._control_updates(value)
    assert len(updates) == 6 and all(u["visible"] is False for u in updates)


def test_a_refused_sketch_reaches_the_reader_as_its_message():
    from lectures_code.demos.common import BadInput

    figure, message, rows = detector14.run_detector("sketch", BadInput("图片尺寸过大（测试）"), 0, None, "FCOS",
                                                    0.3, 0.5, 100)
    assert figure is None and rows == [] and message == f"{BAD} 图片尺寸过大（测试）"
