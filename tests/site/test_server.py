"""The one server answers the site, the Lecture 12 page and the demo's API; bad input keeps it up."""

from __future__ import annotations

import json
import math

import httpx
import pytest

pytestmark = pytest.mark.site


def call_demo(base: str, demo: str, api_name: str, data: list, timeout: float = 120, expect: str = "complete"):
    """Call a Gradio endpoint the way the browser does: POST the inputs, read the event stream."""
    prefix = f"{base}/demos/{demo}/gradio_api/call/{api_name}"
    body = json.dumps({"data": data}, allow_nan=True)
    event = httpx.post(prefix, content=body, headers={"content-type": "application/json"}, timeout=timeout)
    event.raise_for_status()
    stream = httpx.get(f"{prefix}/{event.json()['event_id']}", timeout=timeout).text
    kind, payload = None, None
    for line in stream.splitlines():
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and kind in ("complete", "error"):
            payload = line.split(":", 1)[1].strip()
    assert kind == expect, f"demo answered {kind}: {payload}"
    return json.loads(payload)


def test_site_pages_are_served(server):
    home = httpx.get(server + "/")
    assert home.status_code == 200 and "Part 3" in home.text
    page = httpx.get(server + "/lectures/lecture-12/")
    assert page.status_code == 200 and "torch.compile" in page.text
    assert httpx.get(server + "/assets/vendor/katex/katex.min.js").status_code == 200
    assert httpx.get(server + "/no/such/page/").status_code == 404


def test_demo_is_mounted_and_redirects(server):
    redirect = httpx.get(server + "/demos/lecture12", follow_redirects=False)
    assert redirect.status_code in (301, 302, 307, 308) and redirect.headers["location"].endswith("/demos/lecture12/")
    config = httpx.get(server + "/demos/lecture12/config").json()
    assert config["analytics_enabled"] is False
    assert httpx.get(server + "/healthz").json()["demos"]


def test_demo_api_trains_and_returns_a_curve(server):
    plot, summary = call_demo(server, "lecture12", "train", ["autograd", 1e-6, 30, 0])
    assert plot is not None and plot.get("plot")
    assert "2.89053e+07" in summary and "30 个 step" in summary


@pytest.mark.parametrize("inputs, message", [
    (["autograd", -1e-3, 10, 0], "学习率 必须是有限的正数"),
    (["autograd", math.nan, 10, 0], "学习率 必须是有限的正数"),
    (["autograd", 1e-6, 0, 0], "步数 必须在 1 到"),
    (["autograd", 1e-6, 10**9, 0], "步数 必须在 1 到"),
])
def test_bad_demo_input_gets_a_message_and_the_server_stays_up(server, inputs, message):
    plot, summary = call_demo(server, "lecture12", "train", inputs)
    assert plot is None
    assert message in summary
    assert httpx.get(server + "/healthz").status_code == 200


def test_a_variant_outside_the_dropdown_is_refused_by_gradio_with_a_message(server):
    error = call_demo(server, "lecture12", "train", ["no-such-variant", 1e-6, 10, 0], expect="error")
    assert "not in the list of choices" in error["error"] and "Traceback" not in error["error"]
    assert httpx.get(server + "/healthz").status_code == 200


def test_diverging_learning_rate_is_explained(server):
    _, summary = call_demo(server, "lecture12", "train", ["tensors", 1e-3, 50, 0])
    assert "发散" in summary


def test_server_binds_loopback_by_default():
    from lectures_code.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8000
