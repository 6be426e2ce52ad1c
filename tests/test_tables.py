"""The Markdown tables of the Lecture 13/14 pages: read from the recorded JSON, written in Chinese.

- every table renders and every ``<!-- table:NAME -->`` marker on the pages has a function;
- the numbers come from the JSON: change a number in a copy of the JSON and the table changes with it;
- no English sentence reaches a page (code spans, math, names and short terms are allowed), and the
  measurement details sit in a collapsed ``??? note "测量方法"`` box;
- an unknown English string in a JSON file is an error, not a silent English cell;
- the hand-written CUDA results are not rendered anywhere.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from lectures_code import tables
from lectures_code.lecture13 import ap_example

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "docs" / "lectures" / "lecture-13.md", ROOT / "docs" / "lectures" / "lecture-14.md"]
MARKER = re.compile(r"<!-- table:([\w-]+) -->")
BENCHMARK_TABLES = ["lecture13-selective-search", "lecture13-coco-eval", "lecture14-test-time",
                    "lecture14-proposal-scaling", "lecture14-fpn-roi-levels", "lecture14-detectors",
                    "lecture14-torchvision"]


def prose(markdown: str) -> str:
    """The Markdown without code spans, code blocks, math and commands: what a reader reads as text."""
    text = re.sub(r"```.*?```", " ", markdown, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    return re.sub(r"\$[^$]*\$", " ", text)


ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'-]*(?:[ ,.;:]+[A-Za-z][A-Za-z'-]*){4,}")


def english_runs(markdown: str) -> list[str]:
    """Runs of five or more English words in a row: a sentence, not a name or a term."""
    return ENGLISH_RUN.findall(prose(markdown))


def test_every_marker_on_the_pages_has_a_table():
    for page in PAGES:
        for name in MARKER.findall(page.read_text(encoding="utf-8")):
            assert name in tables.TABLES, f"{page.name}: no table {name!r}"


@pytest.mark.parametrize("name", sorted(tables.TABLES))
def test_table_renders_in_chinese(name):
    markdown = tables.TABLES[name]()
    assert "| --- |" in markdown
    assert english_runs(markdown) == [], f"{name}: English sentences {english_runs(markdown)}"
    assert re.search(r"[\u4e00-\u9fff]", markdown)


@pytest.mark.parametrize("name", BENCHMARK_TABLES)
def test_measurement_details_are_in_a_collapsed_box(name):
    markdown = tables.TABLES[name]()
    assert '??? note "测量方法"' in markdown
    before, box = markdown.split('??? note "测量方法"', 1)
    assert "python " in box  # the command that reproduces the numbers
    assert "python " not in prose(before) and "线程" not in before.split("\n\n")[-1]


def test_the_english_check_catches_a_sentence():
    assert english_runs("Machine: x86_64, 2 cores shared with other jobs") != []
    assert english_runs("Faster R-CNN + FPN 与 `python benchmarks/coco_eval.py --repeats 5`") == []


@pytest.fixture
def benchmark_copy(tmp_path, monkeypatch):
    """A copy of lectures_code/results/benchmarks/*.json that the tables read instead of the real one."""
    for path in tables.BENCHMARK_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(tables, "BENCHMARK_DIR", tmp_path)
    monkeypatch.setattr(tables, "BENCHMARK_DETECTORS", tmp_path / "detectors.json")

    def edit(name: str, change) -> None:
        path = tmp_path / f"{name}.json"
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))

    return edit


def test_numbers_come_from_the_json(benchmark_copy):
    def coco(r):
        r["rows"][0]["ours_ms"] = 123.0
        r["rows"][0]["reference_ms"] = 4567.0

    def selective(r):
        r["timing"][0]["proposals"] = 98765
        r["digit_canvas_recall"][0]["mean_recall_iou50"] = 0.4321

    def fpn(r):
        r["rows"]["48"]["AP"] = 0.1234

    def torchvision_(r):
        r["models"]["fcos"]["torchvision"]["AP"] = 0.5678
        r["models"]["retinanet"]["step"]["2"]["ours_ms"] = 999.9

    def detectors(r):
        r["detectors"]["fast_rcnn"]["test_ms"] = 777.7
        r["scaling_ms_by_proposals"]["400"]["rcnn"] = 4242.4

    for name, change in (("coco_eval", coco), ("selective_search", selective), ("fpn_roi_levels", fpn),
                         ("torchvision_detectors", torchvision_), ("detectors", detectors)):
        benchmark_copy(name, change)
    coco_table = tables.TABLES["lecture13-coco-eval"]()
    assert "| 123 | 4567 | 37.1× |" in coco_table
    selective_table = tables.TABLES["lecture13-selective-search"]()
    assert "98765 个" in selective_table and "| 0.432 |" in selective_table
    assert "| 0.123 |" in tables.TABLES["lecture14-fpn-roi-levels"]()
    torchvision_table = tables.TABLES["lecture14-torchvision"]()
    assert "| 0.568 |" in torchvision_table and "| 999.9 |" in torchvision_table
    assert "| 777.7 |" in tables.TABLES["lecture14-test-time"]()
    assert "| 4242.4 |" in tables.TABLES["lecture14-proposal-scaling"]()


def test_an_unknown_english_string_is_an_error(benchmark_copy):
    def rename(r):
        r["rows"][0]["case"] = "a new case nobody translated"
        r["rows"][1]["case"] = "a new case nobody translated"

    benchmark_copy("coco_eval", rename)
    with pytest.raises(ValueError, match="translate"):
        tables.TABLES["lecture13-coco-eval"]()


def test_a_missing_result_names_the_command(benchmark_copy):
    (tables.BENCHMARK_DIR / "fpn_roi_levels.json").unlink()
    with pytest.raises(FileNotFoundError, match="python benchmarks/fpn_roi_levels.py"):
        tables.TABLES["lecture14-fpn-roi-levels"]()


def test_ap_example_table_shows_what_pycocotools_computes(pycocotools_evaluate):
    markdown = tables.TABLES["lecture13-ap-example"]()
    gt, detections = ap_example.as_coco_json()
    stats = pycocotools_evaluate(gt, detections).stats
    assert f"/ 10 ≈ {stats[0]:.3f}。" in markdown  # AP@[.5:.95]
    assert f"\\approx {stats[1]:.3f}$。" in markdown  # AP50, the COCO 101-point line
    steps = ap_example.walk_detections()
    assert markdown.count("| TP：") == sum(s.matched_gt is not None for s in steps)
    assert "重复检测" in markdown and "背景" in markdown and "定位不准" in markdown


def test_pages_do_not_render_the_cuda_results_or_english_benchmark_notes():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert "_cuda.md" not in text
        for name in ("coco_eval", "selective_search", "detectors", "fpn_roi_levels", "torchvision_detectors"):
            assert f'lectures_code/results/benchmarks/{name}.md"' not in text
    source = Path(tables.__file__).read_text(encoding="utf-8")
    assert "_cuda.json" not in source and "_cuda.md" not in source  # GPU results come from cuda_report.json only


def test_cuda_status_lists_every_check_as_unverified_until_a_gpu_run_reports(monkeypatch):
    from lectures_code import cuda_checks

    monkeypatch.setattr(cuda_checks, "report", lambda: None)
    text = tables.cuda_status()
    assert text.count("尚未在 GPU 上运行") == len(cuda_checks.CHECKS)
    report = {"command": "python benchmarks/cuda_check.py", "environment": {"gpu": "GPU", "torch": "2.11",
                                                                           "torchvision": "0.26"},
              "checks": {"ops": {"status": "passed", "summary": "40 passed"},
                         "training": {"status": "failed", "summary": "1 failed, 6 passed"}}}
    monkeypatch.setattr(cuda_checks, "report", lambda: report)
    text = tables.cuda_status()
    assert "通过（40 passed）" in text and "**未通过**（1 failed, 6 passed）" in text
    assert text.count("尚未在 GPU 上运行") == len(cuda_checks.CHECKS) - 2 and "测量方法" in text


# ----------------------------------------------------------------------------------------------------------
# The commands the tables show reproduce the recorded runs


def _training_records():
    from lectures_code import registry

    for entry in registry.MODELS.values():
        file_name, key = entry.record
        yield entry, tables.load_result(file_name)[key]


@pytest.mark.parametrize("entry, record", list(_training_records()), ids=lambda value: getattr(value, "name", ""))
def test_the_shown_training_command_runs_the_recorded_recipe(entry, record):
    from lectures_code.cli import build_parser, recipe_from_arguments

    command = tables.training_command(record)
    assert command.startswith(f"lectures train {entry.name}")
    args = build_parser().parse_args(command.split()[1:])  # a command the CLI of today accepts
    recipe = recipe_from_arguments(entry, args)
    assert recipe.num_train_images == record["train_images"]
    steps_per_epoch = recipe.steps_per_epoch or -(-recipe.num_train_images // recipe.batch_size)
    if entry.name == "rcnn":  # R-CNN's epochs count its sampled minibatches of regions
        assert recipe.epochs == record["epochs"]
    else:
        assert recipe.epochs * steps_per_epoch == record["steps"], (recipe, record["steps"])
    settings = record.get("settings", {})
    if "lr" in settings:
        assert recipe.lr == settings["lr"] and recipe.batch_size == settings["batch_size"]


def test_records_of_the_shared_loop_render_too(monkeypatch, tmp_path):
    """A record that `lectures train` writes today (tiny runs) fills the Lecture 13 tables."""
    from lectures_code import registry
    from lectures_code.training.run import train_and_record

    monkeypatch.setenv("LECTURES_CODE_HOME", str(tmp_path))
    made = {}
    for name, recipe in (("single-object", dict(num_train_images=8, steps_per_epoch=2, batch_size=4,
                                                  num_test_images=4)),
                         ("rcnn", dict(num_train_images=2, epochs=1, batch_size=32, num_test_images=2))):
        entry = registry.get(name)
        made[entry.record[1]] = train_and_record(entry, entry.recipe.with_options(**recipe), progress=False,
                                                 command=f"lectures train {name}")
    monkeypatch.setattr(tables, "load_result", lambda name: made)
    single, rcnn = tables.lecture13_single_object(), tables.lecture13_rcnn()
    assert "lectures train single-object" in single and "λ = 10" in single
    assert "lectures train rcnn" in rcnn and "Selective Search 的 “fast” 策略" in rcnn
