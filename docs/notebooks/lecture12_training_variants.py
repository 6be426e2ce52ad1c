# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # L12 训练方式对比
#
# 这个页面在构建站点时真的运行了一遍（mkdocs-jupyter，`allow_errors: false`）：下面的输出都是当时的结果。右上角的按钮可以下载这个笔记本（jupytext 格式的 `.py`，用 `jupytext --to ipynb` 可转成 `.ipynb`）。
#
# 内容：
#
# 1. 手写反向传播的梯度与 autograd 的梯度在 float64 下是否一致；
# 2. Lecture 12 的各种写法在同一份数据上的损失曲线和用时（每个只有几百步的小计算，总共几秒）。

# %%
import time

import torch

from lectures_code.examples import EXAMPLES
from lectures_code.lecture12.common import make_regression_data
from lectures_code.lecture12.tensors_manual_backprop import manual_gradients
from lectures_code.plotting import plot_losses

torch.set_num_threads(1)  # tiny matrices: one thread is as fast and never waits for a busy second core
print("torch", torch.__version__)

# %% [markdown]
# ## 1. 手写梯度 vs autograd
#
# 同一组 $x, y, W_1, W_2$（float64），一次用 `manual_gradients` 手算，一次用 `loss.backward()`。

# %%
x, y = make_regression_data(N=64, D_in=1000, D_out=10, device="cpu", seed=0, dtype=torch.float64)
generator = torch.Generator().manual_seed(1)
w1 = torch.randn(1000, 100, generator=generator, dtype=torch.float64, requires_grad=True)
w2 = torch.randn(100, 10, generator=generator, dtype=torch.float64, requires_grad=True)

loss, grad_w1, grad_w2 = manual_gradients(x, y, w1.detach(), w2.detach())
(x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum().backward()

for name, manual, auto in [("W1", grad_w1, w1.grad), ("W2", grad_w2, w2.grad)]:
    relative = ((manual - auto).abs().max() / auto.abs().max()).item()
    print(f"{name}: max |manual - autograd| / max |autograd| = {relative:.2e}")

# %% [markdown]
# ## 2. 各种写法的损失曲线
#
# `torch.compile` 的第一次调用要编译十几秒，这里不运行它（测试里会运行并与 eager 对比）。前两种写法的损失是**求和**，后面的是**均值**（`F.mse_loss`），所以分两张图画。

# %%
results = {}
for name in ["tensors", "autograd", "jit-script", "sequential", "adam", "two-layer-net", "parallel-block",
             "dataloader"]:
    example = EXAMPLES[name]
    start = time.perf_counter()
    results[name] = example.run(steps=example.steps, learning_rate=example.learning_rate, device="cpu", seed=0)
    print(f"{name:15s} {example.steps:4d} steps  lr={example.learning_rate:<7g} "
          f"loss {results[name].losses[0]:10.4g} -> {results[name].losses[-1]:10.4g}  "
          f"{time.perf_counter() - start:5.2f} s")

# %% [markdown]
# `jit-script` 的损失函数里有一个分支：上一步的损失小于 5 时用 `w2a`，否则用 `w2b`。训练循环从梯度看出每一步实际走了哪一支（没被用到的那个权重拿不到梯度），统计如下：

# %%
static = results["jit-script"]
print("每一步用到的第二层权重:", {name: static.branches.count(name) for name in sorted(set(static.branches))})
print(f"损失的最小值: {min(static.losses):.4g}")

# %%
import matplotlib.pyplot as plt  # noqa: E402

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
plot_losses([results[n] for n in ["tensors", "autograd", "jit-script"]], ax=left, title="求和损失 sum of squares")
plot_losses([results[n] for n in ["sequential", "adam", "two-layer-net", "parallel-block"]], ax=right,
            title="均方误差 MSE")
plt.show()

# %% [markdown]
# 观察：
#
# - `tensors`（手写梯度）和 `autograd` 的曲线完全重合：同样的数据、初始权重和更新规则；
# - `jit-script` 的曲线与 `autograd` 不同，原因不是分支切换：上面的统计显示损失一直远大于 5，每一步走的都是 `w2b`。它的 `w1`、`w2a` 与 `autograd` 例子的 $W_1$、$W_2$ 是同一组随机数，`w2b` 则是另一组随机数，所以第二层从不同的初始权重出发，曲线也就不同；
# - 在均方误差下，Adam（$10^{-4}$）比手动 SGD（$10^{-2}$）下降得快得多。
#
# DataLoader 例子按 epoch 记录损失（每个 epoch 8 个小批量），单独画：

# %%
fig = plot_losses([results["dataloader"]], log_scale=False)
fig.axes[0].set_xlabel("epoch")
plt.show()
