"""Markdown tables of recorded results, by name; docs/hooks/tables.py puts them in pages.

A page holds ``<!-- table:NAME -->``; ``TABLES[NAME]()`` returns the Markdown that replaces it. The numbers
come from the JSON files that the training commands (lectures_code/results/*.json) and the benchmark scripts
(lectures_code/results/benchmarks/*.json) write: the JSON is the one source of truth, no number is typed here. Each
table is written for the Chinese notes: the table and one sentence stay in the text, and how the number
was measured (machine, threads, command, repeats) goes into a collapsed ``??? note "测量方法"`` box.
English strings of a JSON file (case names, settings) are translated through the small maps below, which
raise on a string they do not know, so no English sentence can leak into a page unnoticed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from fractions import Fraction

from lectures_code import results

BENCHMARK_DIR = results.BENCHMARK_DIR
BENCHMARK_DETECTORS = BENCHMARK_DIR / "detectors.json"


def load_result(name: str) -> dict:
    """A training record file of lectures_code/results (package data)."""
    return results.read(name)


def load_benchmark(name: str) -> dict:
    """lectures_code/results/benchmarks/<name>.json, written by ``python benchmarks/<name>.py``."""
    path = BENCHMARK_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `python benchmarks/{name}.py` to produce it")
    return json.loads(path.read_text(encoding="utf-8"))


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def collapsed(title: str, paragraphs: list[str], kind: str = "note") -> str:
    """A collapsed MkDocs Material box (``??? kind "title"``) holding Markdown paragraphs or tables."""
    body = "\n\n".join(paragraphs)
    indented = "\n".join(("    " + line) if line else "" for line in body.splitlines())
    return f'\n??? {kind} "{title}"\n\n{indented}\n'


def measurement_box(paragraphs: list[str]) -> str:
    return collapsed("测量方法", paragraphs)


OLD_TRAINING_COMMAND = re.compile(r"python -m lectures_code\.detection\.(\w+)(.*)")


def training_command(record: dict) -> str:
    """The command that reproduces a training record, as a reader types it today.

    Records written before the shared training loop name their model's own module
    (``python -m lectures_code.detection.fcos --epochs 14 ...``); the shared loop (``lectures train``) gives
    bitwise the same weights for the same recipe, so such a record is shown as its ``lectures train`` command
    (``--steps`` became ``--steps-per-epoch``, the single-object recipe having one epoch)."""
    match = OLD_TRAINING_COMMAND.fullmatch(record["command"].strip())
    if match is None:
        return record["command"]
    name, arguments = match.groups()
    return f"lectures train {name.replace('_', '-')}" + arguments.replace("--steps ", "--steps-per-epoch ")


def _setting(record: dict, key: str, *older_keys: str):
    """A run setting: in the record's "settings" (records of ``lectures train``), or under an older key."""
    for candidate in older_keys:
        if candidate in record:
            return record[candidate]
    return record["settings"][key]


def machine(cpu: str) -> str:
    """'x86_64' -> '一台 x86_64 CPU': what the machine was, in the reader's words."""
    return f"一台 {cpu} CPU"


def threads(count: int) -> str:
    return "单线程" if count == 1 else f"{count} 个线程"


# ----------------------------------------------------------------------------------------------
# Lecture 13


def lecture13_single_object() -> str:
    r = load_result("lecture13_detectors")["single_object"]
    t = r["test"]
    rows = [
        ["类别准确率 accuracy", t["accuracy"]],
        ["平均 IoU mean IoU", t["mean_iou"]],
        ["IoU > 0.5 的比例", t["iou_above_0.5"]],
        ["类别正确且 IoU > 0.5", t["correct_and_iou_above_0.5"]],
        ["测试图像数", t["images"]],
        ["训练用时（秒）", r.get("train_seconds (steps only)", r.get("train_seconds"))],
        ["每张测试图用时（毫秒）", 1000 * r["seconds_per_test_image"]],
    ]
    return (markdown_table(["指标（测试集）", "值"], rows)
            + f"\n多任务损失的权重 λ = {_setting(r, 'box_weight', 'box_weight_lambda'):g}。\n"
            + measurement_box([
                f"{machine(r['machine'])}，PyTorch {threads(r['cpu_threads'])}（{r['torch']}）；"
                f"{r['train_images']} 张训练画布，{r['steps']} 步，batch {_setting(r, 'batch_size', 'batch_size')}。"
                "训练用时只计训练步，不含生成画布的时间。",
                f"复现命令：`{training_command(r)}`",
            ]))


RCNN_PROPOSALS = re.compile(r"selective search (\w+), max (\d+)")


def lecture13_rcnn() -> str:
    r = load_result("lecture13_detectors")["rcnn"]
    t, s = r["test"], r["settings"]
    timing = r["seconds_per_test_image"]
    header = ["AP@[.5:.95]", "AP50", "AP75", "AP small", "AP medium", "AR@100", "训练用时 (s)", "每图用时 (s)"]
    row = [t["AP"], t["AP50"], t["AP75"], t["AP_small"], t["AP_medium"], t["AR100"],
           r["train_seconds"], timing["total_without_cache"]]
    class_rows = [[name, v["AP"], v["AP50"]] for name, v in sorted(r["per_class_ap"].items())]
    proposal_setting = s.get("proposals", r.get("proposals"))
    proposals = RCNN_PROPOSALS.fullmatch(proposal_setting)
    if proposals is None:
        raise ValueError(f"unknown proposal setting {proposal_setting!r}: translate it in tables.py")
    strategy, limit = proposals.groups()
    return (
        markdown_table(header, [row])
        + f"\n测试集 {r['test_images']} 张画布，用我们的 `coco_evaluate` 评分。每张图的用时里，Selective Search 占 "
        f"{timing['selective_search']:.2f} s。\n"
        + collapsed("各类别的 AP", [markdown_table(["数字", "AP", "AP50"], class_rows)], kind="info")
        + measurement_box([
            f"{machine(r['machine'])}，PyTorch {threads(r['cpu_threads'])}（{r['torch']}）。"
            f"训练 {r['train_images']} 张画布、{r['epochs']} 个 epoch；"
            f"每个候选框缩放到 {s['crop_size']}×{s['crop_size']}（论文是 224×224，"
            f"在 CPU 上太慢）；候选框：Selective Search 的 “{strategy}” 策略，每张图最多 {limit} 个。",
            "“每图用时”是一张测试画布从图像到最终检测的全部时间（Selective Search 不用缓存）。",
            f"复现命令：`{training_command(r)}`",
        ])
    )


def lecture13_transfer() -> str:
    r = load_result("lecture13_transfer")
    cfg = r["config"]
    names = {
        "feature_extraction": "特征提取（冻结，只训练线性层）",
        "fine_tuning": f"微调（骨干 lr × {cfg['backbone_lr_factor']:g}，冻结前 {cfg['freeze_blocks']} 个 block）",
        "scratch": "从头训练（随机初始化）",
    }
    shots = [str(s) for s in cfg["shots_per_class"]]
    rows = []
    for regime, label in names.items():
        runs = r["results"][regime]
        rows.append([label] + [f"{runs[s]['test_accuracy']:.3f}（{runs[s]['train_seconds']:.0f} s）" for s in shots])
    size = cfg["image_size"]
    env = r["environment"]
    return (
        markdown_table(["做法 \\ 每类训练样本数"] + shots, rows)
        + f"\n测试集：{cfg['test_per_class'] * 10} 个不参与训练的数字。括号里是训练用时。\n"
        + measurement_box([
            f"{machine(env['machine'])}，PyTorch {threads(env['threads'])}（{env['torch']}）。"
            f"图像缩放到 {size}×{size}；"
            f"全网络训练 {cfg['steps_full_network']} 步（{cfg['optimizer']}，batch {cfg['batch_size']}），"
            f"特征提取训练 {cfg['feature_extraction_epochs']} 个 epoch（特征只算一次，所以很快）；"
            f"随机种子 {cfg['seed']}。",
            f"复现命令：`{r['command']}`",
        ])
    )


def _fraction(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _tex(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return rf"\tfrac{{{value.numerator}}}{{{value.denominator}}}"


def _counted_mean(values: list[Fraction]) -> str:
    """(4 × 1 + 7 × 1/2) / 11: equal neighbouring values grouped, in order."""
    groups: list[list] = []
    for v in values:
        if groups and groups[-1][0] == v:
            groups[-1][1] += 1
        else:
            groups.append([v, 1])
    terms = " + ".join(rf"{n} \times {_tex(v)}" for v, n in groups)
    return rf"\left({terms}\right) / {len(values)}"


def lecture13_ap_example() -> str:
    """The worked AP example: the walk-through table and the three interpolations, all from ap_example."""
    from lectures_code.lecture13 import ap_example as ex

    threshold = Fraction(1, 2)
    steps = ex.walk_detections(threshold)
    envelope = ex.envelope(steps)
    rows = []
    matched_by: dict[str, str] = {}
    for step, interpolated in zip(steps, envelope):
        where = f"{float(step.best_iou):.2f}（{step.best_gt}）" if step.best_gt else "0（无重叠）"
        if step.matched_gt:
            verdict = f"TP：匹配 {step.matched_gt}"
            matched_by[step.matched_gt] = step.name
        elif step.best_gt is None:
            verdict = "FP：背景"
        elif step.best_iou < threshold:
            verdict = "FP：IoU < 0.5，定位不准"
        else:
            verdict = f"FP：{step.best_gt} 已被 {matched_by[step.best_gt]} 匹配，重复检测"
        rows.append([f"{step.name}（{step.score:.2f}）", where, verdict, f"{step.tp} / {step.fp}",
                     _fraction(step.precision), _fraction(step.recall), _fraction(interpolated)])
    header = ["检测（分数）", "最大 IoU（真实框）", "判定", "累计 TP / FP", "精确率 P", "召回率 R", "插值精确率"]

    voc_points = [ex.precision_at(steps, Fraction(i, 10)) for i in range(11)]
    coco_points = [ex.precision_at(steps, Fraction(i, 100)) for i in range(101)]
    area_terms, previous = [], Fraction(0)
    for step, p in zip(steps, envelope):
        if step.recall > previous:
            area_terms.append(rf"{_tex(step.recall - previous)} \times {_tex(p)}")
            previous = step.recall
    voc07, area, coco = ex.ap_voc07(steps), ex.ap_all_points(steps), ex.ap_coco101(steps)
    lines = [
        r"- **VOC2007，11 点**：召回率 $0, 0.1, \dots, 1$ 处的插值精确率依次是 "
        + "、".join(_fraction(p) for p in voc_points)
        + rf"，$\mathrm{{AP}} = {_counted_mean(voc_points)} = {_tex(voc07)} \approx {float(voc07):.3f}$；",
        rf"- **VOC2010+，全点面积**：召回率每上升一段，乘上那一段的插值精确率："
        rf"$\mathrm{{AP}} = {' + '.join(area_terms)} = {_tex(area)} \approx {float(area):.3f}$；",
        rf"- **COCO，101 点**：召回率 $0, 0.01, \dots, 1$ 处取插值精确率再平均："
        rf"$\mathrm{{AP}}_{{50}} = {_counted_mean(coco_points)} = {_tex(coco)} \approx {float(coco):.3f}$。",
    ]
    per_threshold = ex.coco_ap_over_thresholds()
    mean = sum(per_threshold.values()) / len(per_threshold)
    groups: list[list] = []  # [first threshold, last threshold, AP, count] for runs of equal AP
    for t, ap in per_threshold.items():
        if groups and groups[-1][2] == ap:
            groups[-1][1] = t
            groups[-1][3] += 1
        else:
            groups.append([t, t, ap, 1])
    threshold_table = markdown_table(
        ["IoU 阈值"] + [f"{float(a):.2f}" if a == b else f"{float(a):.2f}–{float(b):.2f}" for a, b, _, _ in groups],
        [["AP（101 点）"] + [f"{float(ap):.3f}" for _, _, ap, _ in groups]],
    )
    rough = min((s for s in steps if s.matched_gt), key=lambda s: s.best_iou)  # the loosest true positive
    lost_at = next(t for t in per_threshold if t > rough.best_iou)
    mean_terms = " + ".join(f"{count} × {float(ap):.3f}" for _, _, ap, count in groups)
    return (
        markdown_table(header, rows)
        + "\n" + "\n".join(lines) + "\n\n"
        + f"COCO 的主指标 AP@[.5:.95] 把同样的计算在 {len(per_threshold)} 个 IoU 阈值上各做一遍再平均。"
        + f"阈值越高，粗糙的框越早变成 FP（这里 {rough.name} 的 IoU 只有 {float(rough.best_iou):.2f}，"
        + f"阈值 {float(lost_at):.2f} 起就不算数了）：\n\n"
        + threshold_table
        + f"\nAP@[.5:.95] = ({mean_terms}) / {len(per_threshold)} ≈ {float(mean):.3f}。\n"
    )


SELECTIVE_SEARCH_CASE = re.compile(r"(\w+) (\d+)x(\d+), (\w+)")
PHOTO_NAMES = {"astronaut": "宇航员", "chelsea": "猫（chelsea）", "coffee": "咖啡（coffee）"}


def lecture13_selective_search() -> str:
    r = load_benchmark("selective_search")
    photos: dict[tuple[str, str], dict[str, dict]] = {}
    strategies: list[str] = []
    for row in r["timing"]:
        match = SELECTIVE_SEARCH_CASE.fullmatch(row["case"])
        if match is None:
            raise ValueError(f"unknown selective_search case {row['case']!r}: translate it in tables.py")
        photo, height, width, strategy = match.groups()
        if photo not in PHOTO_NAMES:
            raise ValueError(f"unknown photo {photo!r}: add its Chinese name to PHOTO_NAMES")
        photos.setdefault((photo, f"{width}×{height}"), {})[strategy] = row
        if strategy not in strategies:
            strategies.append(strategy)
    timing_rows = [
        [PHOTO_NAMES[photo], size]
        + [f"{runs[s]['ours_ms'] / 1000:.2f} s（{runs[s]['proposals']} 个）" if s in runs else "—" for s in strategies]
        for (photo, size), runs in photos.items()
    ]
    recall_rows = [[row["strategy"], row["mean_recall_iou50"], row["mean_recall_iou70"],
                    f"{row['mean_proposals']:.0f}", f"{row['median_ms']:.0f}"] for row in r["digit_canvas_recall"]]
    canvases = r["digit_canvas_recall"][0]
    return (
        "scikit-image 自带的三张照片上，各策略的用时（括号里是候选框个数，不设上限）：\n\n"
        + markdown_table(["照片", "宽×高"] + [f"“{s}” 策略" for s in strategies], timing_rows)
        + f"\n{canvases['canvases']} 张数字画布（共 {canvases['objects']} 个数字）上，候选框的召回率"
        "（一张画布上被至少一个候选框以 IoU ≥ 阈值覆盖的真实框所占的比例，对画布取平均）：\n\n"
        + markdown_table(["策略", "召回率 @IoU 0.5", "召回率 @IoU 0.7", "每图候选框数", "每图用时 (ms)"], recall_rows)
        + measurement_box([
            f"{machine(r['machine'])}，PyTorch {threads(r['torch_threads'])}，NumPy {r['numpy']}；"
            "我们的 Selective Search 是 NumPy 写的，在 CPU 上运行。照片的用时取多次运行的中位数。",
            "没有可对照的参考实现：OpenCV 的 Selective Search 在 opencv-contrib-python 里，它不是本项目的依赖。",
            "召回率用的画布与正文检测器的画布不同：每张 2–5 个真实 MNIST 数字，随机缩放、随机颜色，"
            "贴在带纹理的背景上，数字的框互不重叠；候选框按默认上限截断。",
            "复现命令：`python benchmarks/selective_search.py`",
        ])
    )


COCO_EVAL_CASE = re.compile(r"(\d+) images, (\d+) GT, (\d+) dets, (\d+) classes")
STATISTICS = {"median (interleaved rounds)": "几种实现交替运行、每轮各测一次，取各轮的中位数"}


def lecture13_coco_eval() -> str:
    r = load_benchmark("coco_eval")
    rows, cases = [], set()
    for row in r["rows"]:
        cases.add(row["case"])
        rows.append([row["reference"], f"{row['ours_ms']:.0f}", f"{row['reference_ms']:.0f}",
                     f"{row['reference_ms'] / row['ours_ms']:.1f}×", f"{row['max_stats_diff']:g}"])
    if len(cases) != 1:
        raise ValueError(f"expected one benchmark case, got {sorted(cases)}")
    match = COCO_EVAL_CASE.fullmatch(cases.pop())
    if match is None:
        raise ValueError(f"unknown coco_eval case {r['rows'][0]['case']!r}: translate it in tables.py")
    images, gts, dets, classes = match.groups()
    return (
        f"{images} 张图、{gts} 个真实框、{dets} 个检测、{classes} 个类别，从 JSON 字典算到 12 个指标的全过程：\n\n"
        + markdown_table(["参考实现", "我们 (ms)", "参考实现 (ms)", "我们快多少倍", "12 个指标的最大差"], rows)
        + measurement_box([
            f"{machine(r['machine'])}，{threads(r['threads'])}；重复 {r['repeats']} 轮，{STATISTICS[r['statistic']]}。"
            "每次计时包括建索引、匹配、累积和汇总；pycocotools 与 faster-coco-eval 会修改输入，"
            "它们需要的深拷贝在计时之外完成。",
            "数据是随机生成的：框从小到大都有，约 2% 的真实框是 crowd，分数保留 3 位小数（所以有很多同分的检测）。",
            "复现命令：`python benchmarks/coco_eval.py`",
        ])
    )


# ----------------------------------------------------------------------------------------------
# Lecture 14


LECTURE14_MODELS = {  # record key -> (name on the page, kind), in the lecture's order
    "fast_rcnn": ("Fast R-CNN", "两阶段，外部提议"),
    "faster_rcnn": ("Faster R-CNN", "两阶段，RPN"),
    "faster_rcnn_fpn": ("Faster R-CNN + FPN", "两阶段，RPN，FPN"),
    "retinanet": ("RetinaNet（FPN）", "单阶段，锚框"),
    "fcos": ("FCOS（FPN）", "单阶段，无锚框"),
}


def lecture14_detectors() -> str:
    """R-CNN (Lecture 13) next to the Lecture 14 detectors, as in the lecture's comparison.

    Accuracy and training time come from each model's training record; the per-canvas timings from
    lectures_code/results/benchmarks/detectors.json, where all detectors were timed in one run.
    """
    lecture13 = load_result("lecture13_detectors")
    lecture14 = load_result("lecture14_detectors")
    timings = json.loads(BENCHMARK_DETECTORS.read_text())
    records = {"rcnn": lecture13["rcnn"], **lecture14}
    models = {"rcnn": ("R-CNN（Lecture 13）", "两阶段，外部提议"), **LECTURE14_MODELS}
    rows, commands, test_images, cpus, thread_counts = [], [], set(), set(), set()
    for key, (name, kind) in models.items():
        if key not in records:
            continue
        r, t = records[key], timings["detectors"].get(key, {})
        proposals = f"{t['proposals_ms']:.1f}" if "proposals_ms" in t else "—（网络内）"
        train_ms = f"{t['train_ms_per_canvas']:.1f}" if "train_ms_per_canvas" in t else "—"
        test_ms = f"{t['test_ms']:.1f}" if "test_ms" in t else "—"
        rows.append([name, kind, r["train_images"], r["train_seconds"], train_ms, test_ms, proposals,
                     r["test"]["AP50"], r["test"]["AP"]])
        commands.append(f"- {name}：`{training_command(r)}`")
        test_images.add(r["test_images"])
        cpus.add(r["machine"])
        thread_counts.add(r["cpu_threads"])
    header = ["模型", "类型", "训练图像", "训练用时 (s)", "训练 ms/画布", "测试 ms/画布", "其中区域提议 (ms)",
              "AP50", "AP@[.5:.95]"]
    if len(test_images) != 1:
        raise ValueError(f"the detectors were evaluated on different test sets: {sorted(test_images)}")
    return (markdown_table(header, rows)
            + f"\n所有模型都在同样的 {test_images.pop()} 张测试画布上、用我们的 `coco_evaluate` 评分。\n"
            + measurement_box([
                "“训练用时”是各模型训练时记录的总用时（" + "、".join(machine(c) for c in sorted(cpus))
                + "，PyTorch " + "、".join(threads(n) for n in sorted(thread_counts))
                + "）；各模型不是同时训练的，测量时机器上还有其他任务，所以只能当上限看。",
                f"“训练 ms/画布”与“测试 ms/画布”来自另一次运行：{machine(timings['machine'])}，"
                f"PyTorch {threads(timings['threads'])}，所有检测器在同一次运行里轮流计时"
                "（负载的变化对它们的影响相同）。"
                f"测试：batch 1，{timings['test_images']} 张测试画布的中位数，从图像到最终检测的全部时间，"
                "R-CNN 和 Fast R-CNN 含 Selective Search（不用缓存）。训练：一次前向、全部损失和反向传播，"
                f"batch {timings['train_batch']}，重复 {timings['train_rounds']} 轮取中位数，再除以 batch 大小；"
                "R-CNN 在裁剪后的区域上训练，没有可比的数字。",
                f"计时命令：`{timings['command'].strip()}`",
                "复现训练的命令：\n\n" + "\n".join(commands),
            ]))


def lecture14_test_time() -> str:
    """Where a canvas's test time goes: Selective Search vs the network, R-CNN / Fast R-CNN / Faster R-CNN."""
    timings = json.loads(BENCHMARK_DETECTORS.read_text())
    rows = []
    for key, name in (("rcnn", "R-CNN"), ("fast_rcnn", "Fast R-CNN"), ("faster_rcnn", "Faster R-CNN")):
        t = timings["detectors"].get(key)
        if t is None:
            continue
        proposals = t.get("proposals_ms", 0.0)
        network = t["test_ms"] - proposals
        rows.append([name, f"{t['test_ms']:.1f}", f"{proposals:.1f}" if proposals else "—（RPN 在网络内）",
                     f"{network:.1f}", f"{100 * proposals / t['test_ms']:.0f}%"])
    header = ["模型", "每张画布 (ms)", "Selective Search (ms)", "其余：网络 + NMS (ms)", "区域提议占比"]
    return (markdown_table(header, rows)
            + measurement_box([
                f"{machine(timings['machine'])}，PyTorch {threads(timings['threads'])}，batch 1，"
                f"{timings['test_images']} 张测试画布的中位数；所有检测器在同一次运行里轮流计时。",
                f"命令：`{timings['command'].strip()}`",
            ]))


def lecture14_proposal_scaling() -> str:
    """R-CNN vs Fast R-CNN given N random proposals (Selective Search left out), from the same run."""
    timings = json.loads(BENCHMARK_DETECTORS.read_text())
    scaling = timings["scaling_ms_by_proposals"]
    rows = [[n, f"{v['rcnn']:.1f}", f"{v['fast_rcnn']:.1f}", f"{v['rcnn'] / v['fast_rcnn']:.1f}×"]
            for n, v in sorted(scaling.items(), key=lambda item: int(item[0]))]
    return (markdown_table(["候选框个数 N", "R-CNN (ms)", "Fast R-CNN (ms)", "R-CNN / Fast R-CNN"], rows)
            + measurement_box([
                f"{machine(timings['machine'])}，PyTorch {threads(timings['threads'])}，batch 1；候选框是随机生成的框"
                "（不跑 Selective Search），两个模型交替计时，取中位数。",
                f"命令：`{timings['command'].strip()}`",
            ]))


def lecture14_fpn_roi_levels() -> str:
    r = load_benchmark("fpn_roi_levels")
    rows = []
    for scale, v in r["rows"].items():
        label = f"{scale}（训练时）" if int(scale) == r["trained_with"] else scale
        shares = " / ".join(f"{100 * share:.0f}%" for share in v["gt_share_P3_P4_P5"])
        rows.append([label, shares, f"{v['AP']:.3f}", f"{v['AP50']:.3f}", f"{v['AP_small']:.3f}",
                     f"{v['AP_medium']:.3f}"])
    return (markdown_table(["$s_0$", "真实框去 P3 / P4 / P5 的比例", "AP", "AP50", "AP small", "AP medium"], rows)
            + measurement_box([
                f"同一个训练好的模型（训练时 $s_0 = {r['trained_with']}$），不重新训练，只换 RoI 的层号映射，"
                "在测试画布上用我们的 `coco_evaluate` 评分。",
                f"命令：`{r['command']}`",
            ]))


def _evaluated_canvases(record: dict) -> str:
    """How many test canvases the AP columns used, as the benchmark's note records it."""
    match = re.search(r"on the first (\d+) test canvases", record.get("note", ""))
    return f"前 {match.group(1)} 张测试画布" if match else "测试画布"


def lecture14_torchvision() -> str:
    """Our detectors next to torchvision's classes built the same way (benchmarks/torchvision_detectors.py)."""
    r = load_benchmark("torchvision_detectors")
    names = {"faster_rcnn": "Faster R-CNN", "fcos": "FCOS", "retinanet": "RetinaNet"}
    accuracy, steps, recipes = [], [], []
    for key, m in r["models"].items():
        name = names[key]
        ours, theirs = m["ours"], m["torchvision"]
        accuracy.append([name, f"{ours['AP']:.3f}", f"{theirs['AP']:.3f}", f"{ours['AP50']:.3f}",
                         f"{theirs['AP50']:.3f}", f"{ours['infer_ms']:.1f}", f"{theirs['infer_ms']:.1f}"])
        for count, s in sorted(m["step"].items(), key=lambda item: int(item[0])):
            steps.append([name, threads(int(count)), f"{s['ours_ms']:.1f}", f"{s['torchvision_ms']:.1f}",
                          f"{s['ratio']:.2f}"])
        recipe = m["recipe"]
        recipes.append(f"{name} {recipe['num_train_images']} 张训练画布、{recipe['epochs']} 个 epoch、"
                       f"batch {recipe['batch_size']}、lr {recipe['lr']:g}")
    env = r["environment"]
    text = (
        "测试集上的精度与推理用时（每张画布，batch 1，单线程）：\n\n"
        + markdown_table(["模型", "AP 我们", "AP torchvision", "AP50 我们", "AP50 torchvision", "推理 ms 我们",
                          "推理 ms torchvision"], accuracy)
        + "\n一个训练步的用时（比值 = 我们 / torchvision，小于 1 表示我们更快）：\n\n"
        + markdown_table(["模型", "线程", "我们 (ms)", "torchvision (ms)", "比值"], steps)
    )
    if "transplant" in r["models"].get("faster_rcnn", {}):
        transplant, ours = r["models"]["faster_rcnn"]["transplant"], r["models"]["faster_rcnn"]["ours"]
        text += (f"\n把我们训练好的 Faster R-CNN 权重装进 torchvision 的 `FasterRCNN`：AP {transplant['AP']:.3f}、"
                 f"AP50 {transplant['AP50']:.3f}（我们自己的推理：{ours['AP']:.3f}、{ours['AP50']:.3f}）。\n")
    frcnn, retina = r["models"].get("faster_rcnn"), r["models"].get("retinanet")
    differences = ["torchvision 的 FCOS 回归 relu(x)·s/2，我们的是 exp(scale·x)·s"]
    if frcnn:
        extra = frcnn["parameters"]["box_predictor"][1] - frcnn["parameters"]["box_predictor"][0]
        differences.append(f"torchvision 的 Faster R-CNN 也为背景类预测框变换（多 {extra:,} 个用不到的参数），"
                           "并丢弃小于 1e-3 / 1e-2 像素的框，我们丢弃小于 1 像素的框")
    if retina:
        extra = retina["parameters"]["head"][0] - retina["parameters"]["head"][1]
        differences.append(f"torchvision 的 RetinaNet 头里 GroupNorm 前的卷积没有偏置（共少 {extra} 个参数）")
    return text + measurement_box([
        f"{machine(env['cpu'])}，{env['cpu_count']} 个核，测量时还有其他任务在运行（结束时 1 分钟平均负载 "
        f"{env['load_average_1min']}）；PyTorch {env['torch']}，torchvision {env['torchvision']}。",
        "训练步 = 前向 + 损失 + 反向 + 梯度裁剪 + AdamW + 学习率调度。"
        "我们的模型与 torchvision 的模型用同一个随机种子构建，"
        f"在同一个进程里、在同样的训练批上交替运行；先热身 {env['warmup']} 步，再取 {env['repeats']} 步的中位数，"
        "分别在 1 个和 2 个线程下测。推理：每张测试画布的中位数，batch 1，单线程。"
        f"AP / AP50：我们的 `coco_evaluate`，{_evaluated_canvases(r)}；我们的是发布的检测器权重，torchvision 的是"
        "在单线程下用同样的配方训练的。",
        "保持一致的：骨干（和 FPN）、锚框、图像大小（128，不缩放）和输入归一化、RPN 与框头的采样数量、NMS 前后保留的"
        "候选框数、IoU 阈值、框编码权重、RoI Align（7×7，每格 2×2 个采样点）、中心采样与尺度范围、分数阈值、top-k、"
        "NMS、训练图像、epoch、batch 大小、AdamW、学习率、权重衰减、热身 + 余弦调度、梯度裁剪、随机种子。"
        "训练配方：" + "；".join(recipes) + "。",
        "不一致的地方（torchvision 自己的类如此）：" + "；".join(differences) + "。",
        "只重测训练步（`--step-time-only`）时只替换训练步那几列，所以它们可能来自比精度和推理用时更晚的一次运行；"
        "每一对“我们 / torchvision”总是在同一次运行里测的。",
        "复现命令：`python benchmarks/torchvision_detectors.py`",
    ])


def cuda_status() -> str:
    """What has been checked on a CUDA machine (``lectures_code/cuda_checks.py``) and with which outcome."""
    from lectures_code.cuda_checks import CHECKS, report

    done = report()
    rows = []
    for check in CHECKS:
        outcome = (done or {}).get("checks", {}).get(check.id)
        if outcome is None or outcome["status"] == "not run":
            rows.append([check.description, "尚未在 GPU 上运行"])
        elif outcome["status"] == "passed":
            rows.append([check.description, f"通过（{outcome['summary']}）"])
        else:
            rows.append([check.description, f"**未通过**（{outcome['summary']}）"])
    text = markdown_table(["检查", "结果"], rows)
    if done is None:
        return text + ("\n以上各项目前都还没有在 GPU 上验证：CPU 上的测试全部通过，"
                       "但 CUDA 路径上的正确性与速度要等一次 GPU 运行。\n")
    env = done["environment"]
    return text + measurement_box([
        f"{env['gpu']}，PyTorch {env['torch']}，torchvision {env['torchvision']}；命令：`{done['command']}`。"])


TABLES: dict[str, Callable[[], str]] = {
    "cuda-status": cuda_status,
    "lecture13-transfer": lecture13_transfer,
    "lecture13-single-object": lecture13_single_object,
    "lecture13-selective-search": lecture13_selective_search,
    "lecture13-rcnn": lecture13_rcnn,
    "lecture13-ap-example": lecture13_ap_example,
    "lecture13-coco-eval": lecture13_coco_eval,
    "lecture14-test-time": lecture14_test_time,
    "lecture14-proposal-scaling": lecture14_proposal_scaling,
    "lecture14-fpn-roi-levels": lecture14_fpn_roi_levels,
    "lecture14-detectors": lecture14_detectors,
    "lecture14-torchvision": lecture14_torchvision,
}
