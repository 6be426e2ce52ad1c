"""The shared pieces of the detectors' training commands."""

from __future__ import annotations

import json

from lectures_code.detection import training_cli


def test_parser_defaults_and_paths():
    parser = training_cli.detector_parser("d", "fcos", num_train_images=10, epochs=2, lr=0.1, batch_size=4, threads=1,
                                          record="docs/data/x.json")
    args = parser.parse_args([])
    assert (args.num_train_images, args.epochs, args.lr, args.batch_size, args.threads) == (10, 2, 0.1, 4, 1)
    assert args.checkpoint_path.endswith("fcos_train.pt") and not args.ship and args.num_test_images == 200


def test_update_record_merges_keys(tmp_path):
    path = tmp_path / "sub" / "record.json"
    training_cli.update_record("a", {"x": 1}, path)
    training_cli.update_record("b", {"y": "中文"}, path)
    training_cli.update_record("a", {"x": 2}, path)
    assert json.loads(path.read_text()) == {"a": {"x": 2}, "b": {"y": "中文"}}


def test_named_stats_and_run_info():
    stats = training_cli.named_stats([0.123456, 0.5] + [-1.0] * 10)
    assert list(stats) == training_cli.COCO_STAT_NAMES and stats["AP"] == 0.1235 and stats["AP50"] == 0.5
    args = training_cli.detector_parser("d", "rcnn", num_train_images=1, epochs=1, lr=1.0, batch_size=1, threads=0,
                                        record="r.json").parse_args(["--epochs", "3"])
    info = training_cli.run_info("lectures_code.detection.rcnn", args, ["--epochs", "3"])
    assert info["command"] == "python -m lectures_code.detection.rcnn --epochs 3" and info["train_images"] == 1
