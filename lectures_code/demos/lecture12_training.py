"""Lecture 12 demo: pick a training variant, learning rate and steps; see the loss curve and time."""

from __future__ import annotations

import math

import gradio as gr
import matplotlib.pyplot as plt

from lectures_code.demos.common import BadInput, int_in_range, positive_float
from lectures_code.examples import EXAMPLES
from lectures_code.plotting import plot_losses

# torch.compile needs ~15 s of compilation per run on a CPU: too slow for an interactive demo.
VARIANTS = [name for name, e in EXAMPLES.items() if e.lecture == 12 and name != "compile"]
MAX_STEPS = 2000


def train(variant: str, learning_rate, steps, seed):
    """Returns (figure or None, markdown summary). Bad input gives a message and no figure."""
    try:
        if not isinstance(variant, str) or variant not in VARIANTS:
            raise BadInput(f"未知的训练方式 {variant!r}，可选：{', '.join(VARIANTS)}")
        learning_rate = positive_float(learning_rate, "学习率", maximum=10.0)
        steps = int_in_range(steps, "步数", 1, MAX_STEPS)
        seed = int_in_range(seed, "随机种子", 0, 2**31 - 1)
    except BadInput as err:
        return None, f"**输入有误：** {err}"

    example = EXAMPLES[variant]
    result = example.run(steps=steps, learning_rate=learning_rate, device="cpu", seed=seed)
    diverged = not all(math.isfinite(v) for v in result.losses)
    figure = plot_losses([result], log_scale=not diverged, title=example.title)
    plt.close(figure)
    unit = "epoch" if variant == "dataloader" else "step"
    lines = [
        f"**{example.title}**",
        f"- 初始损失 `{result.losses[0]:.6g}`，最终损失 `{result.losses[-1]:.6g}`"
        f"（缩小 {result.reduction:.3g} 倍）",
        f"- {len(result.losses)} 个 {unit}，用时 {result.seconds:.3f} 秒（{result.device}）",
    ]
    if diverged:
        lines.append("- ⚠️ 损失变成了 NaN/inf：学习率太大，训练发散了。")
    return figure, "\n".join(lines)


def default_learning_rate(name):
    """The variant's own learning rate when the dropdown changes; anything else leaves the field as it is."""
    return EXAMPLES[name].learning_rate if isinstance(name, str) and name in VARIANTS else gr.update()


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Lecture 12 · 训练方式对比", analytics_enabled=False) as demo:
        gr.Markdown("## Lecture 12 · 同一个两层网络，不同的写法\n选择一种写法、学习率和步数，点击“训练”。")
        with gr.Row():
            variant = gr.Dropdown(VARIANTS, value="autograd", label="训练方式 (variant)", elem_id="variant")
            learning_rate = gr.Number(value=EXAMPLES["autograd"].learning_rate, label="学习率 (learning rate)",
                                      elem_id="learning-rate")
            steps = gr.Number(value=200, label=f"步数 (steps, 1-{MAX_STEPS})", precision=0, elem_id="steps")
            seed = gr.Number(value=0, label="随机种子 (seed)", precision=0, elem_id="seed")
        button = gr.Button("训练 (train)", variant="primary", elem_id="train")
        summary = gr.Markdown(elem_id="summary")
        plot = gr.Plot(label="损失曲线 (loss curve)", elem_id="loss-plot")
        # A run is up to a minute at 2000 steps on one CPU core: two at once, the rest wait in the queue.
        button.click(train, [variant, learning_rate, steps, seed], [plot, summary], api_name="train",
                     concurrency_limit=2)
        variant.change(default_learning_rate, variant, learning_rate, api_name="default_learning_rate",
                       concurrency_limit=4)
    return demo
