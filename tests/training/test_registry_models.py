"""Every registry model, the same way: it trains through the shared loop, its shipped checkpoint is safe and
pinned and gives the recorded AP, and its inference API keeps its contract."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from torchvision.ops import box_iou as tv_box_iou

from lectures_code import checkpoints, registry, results
from lectures_code.data.digit_canvases import DigitCanvases
from lectures_code.detection.evaluation import SUBSET, evaluate_detector
from lectures_code.detection.fast_rcnn import evaluate_fast_rcnn
from lectures_code.detection.rcnn import evaluate_rcnn

MODELS = list(registry.MODELS)
DETECTORS = [name for name, entry in registry.MODELS.items() if entry.task == "detection"]

# A tiny recipe per model: the same few images every epoch, so the loss must fall if the model learns.
QUICK = {name: dict(num_train_images=4, epochs=12, batch_size=4, lr=2e-3) for name in MODELS}
QUICK["single-object"] = dict(num_train_images=16, epochs=1, steps_per_epoch=16, batch_size=16, lr=3e-3)
QUICK["rcnn"] = dict(num_train_images=4, epochs=6, batch_size=32, lr=2e-3)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # determinism of the comparisons below does not depend on the thread count
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", MODELS)
def test_the_shared_loop_trains_it(name, tmp_path):
    model, history = registry.train(name, checkpoint_path=tmp_path / "run.pt", **QUICK[name])
    totals = history["total"]
    assert all(math.isfinite(v) for v in totals)
    assert history["steps"] == len(totals) >= 6
    first, last = sum(totals[:3]) / 3, sum(totals[-3:]) / 3
    assert last < 0.8 * first, f"{name}: loss {first:.3f} -> {last:.3f}"
    loss_names = [k for k in history if k.startswith(("loss", "classification", "bbox"))]
    assert loss_names and all(len(history[k]) == len(totals) for k in loss_names)
    assert not model.training
    # The config round trip: the model rebuilt from model.config() takes the trained weights as they are.
    entry = registry.get(name)
    rebuilt = entry.model_class()(**model.config())
    rebuilt.load_state_dict(model.state_dict())
    state = torch.load(tmp_path / "run.pt", weights_only=True)
    assert state["epoch"] == QUICK[name]["epochs"] and state["config"] == model.config()


def test_every_registry_model_is_shipped():
    assert [entry.name for entry in registry.shipped(checkpoints.CHECKPOINT_DIR)] == MODELS


@pytest.mark.parametrize("name", MODELS)
def test_shipped_checkpoint_is_safe_and_pinned(name):
    entry = registry.get(name)
    path = checkpoints.CHECKPOINT_DIR / f"{entry.checkpoint}.pt"
    assert path.stat().st_size < 24_000_000  # small enough to ship in the wheel
    state = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and types only
    assert set(state) == {"state_dict", "metadata"}
    assert all(isinstance(v, torch.Tensor) for v in state["state_dict"].values())
    sums = (checkpoints.CHECKPOINT_DIR / "SHA256SUMS").read_text()
    assert f"{checkpoints.sha256_of(path)}  {entry.checkpoint}.pt" in sums.splitlines()
    model = registry.load_pretrained(name, checkpoints.CHECKPOINT_DIR)
    assert isinstance(model, entry.model_class()) and not model.training
    assert model.config() == entry.model_class()(**state["metadata"]["config"]).config()


@pytest.mark.parametrize("name", ["fcos", "rcnn"])
def test_corrupted_or_unlisted_checkpoint_raises(name, tmp_path):
    file_name = f"{registry.get(name).checkpoint}.pt"
    for copied in (file_name, "SHA256SUMS"):
        shutil.copy(checkpoints.CHECKPOINT_DIR / copied, tmp_path / copied)
    registry.load_pretrained(name, tmp_path)  # an intact copy loads
    data = bytearray((tmp_path / file_name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / file_name).write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match="SHA-256"):
        registry.load_pretrained(name, tmp_path)
    (tmp_path / "SHA256SUMS").write_text("")
    with pytest.raises(checkpoints.CheckpointError, match="not listed"):
        registry.load_pretrained(name, tmp_path)
    with pytest.raises(FileNotFoundError, match="lectures train"):
        registry.load_pretrained(name, tmp_path / "empty")


def test_a_retrained_model_in_the_user_folder_is_loaded_first(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.HOME_ENV, str(tmp_path))
    shipped = registry.load_pretrained("fcos")
    assert checkpoints.search_dirs()[0] == tmp_path / "checkpoints"
    torch.manual_seed(1)
    retrained = registry.get("fcos").build()
    checkpoints.save_checkpoint(retrained.state_dict(), {"config": retrained.config()},
                                tmp_path / "checkpoints" / "fcos_digits.pt")
    loaded = registry.load_pretrained("fcos")
    for key, value in retrained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not torch.equal(loaded.head.cls_logits.weight, shipped.head.cls_logits.weight)


def test_unknown_model_names_are_refused():
    with pytest.raises(KeyError, match="known: single-object"):
        registry.get("yolo")
    assert registry.get("fcos_digits") is registry.get("fcos")


# ----------------------------------------------------------------------------------------------------------
# The inference API of the multi-object detectors


@pytest.fixture(scope="module")
def shipped_models():
    return {name: registry.load_pretrained(name) for name in DETECTORS}


@pytest.fixture(scope="module")
def test_images():
    dataset = DigitCanvases("test", size=2, seed=0)
    return torch.stack([dataset[i][0] for i in range(2)])


@pytest.mark.parametrize("name", DETECTORS)
def test_predict_format_thresholds_and_nms(name, shipped_models, test_images, device):
    model = shipped_models[name].to(device)
    try:
        results_ = model.predict(test_images.to(device))
        assert isinstance(results_, list) and len(results_) == 2
        for result in results_:
            boxes, scores, labels = result["boxes"], result["scores"], result["labels"]
            n = len(scores)
            assert 1 <= n <= model.max_detections
            assert boxes.shape == (n, 4) and boxes.dtype == torch.float32 and boxes.device.type == device
            assert scores.dtype == torch.float32 and labels.dtype == torch.int64
            assert bool((scores[:-1] >= scores[1:]).all()) and bool((scores >= model.score_threshold).all())
            assert bool((labels >= 0).all() and (labels <= 9).all())
            assert bool((boxes >= 0).all() and (boxes <= 128).all()) and bool((boxes[:, 2:] > boxes[:, :2]).all())
            iou = tv_box_iou(boxes.cpu(), boxes.cpu()).fill_diagonal_(0)
            same_class = labels.cpu()[:, None] == labels.cpu()[None, :]
            assert bool((iou[same_class] <= model.nms_threshold + 1e-6).all())  # per-class NMS happened
            if registry.get(name).proposals:
                assert result["proposals"].ndim == 2 and result["proposals"].shape[1] == 4
        if name != "rcnn":  # (R-CNN's nn.Module is the per-region CNN: its forward takes warped crops)
            # eval-mode forward = predict with the model's own thresholds, without the extras
            plain = model(test_images[:1].to(device))[0]
            alone = model.predict(test_images[:1].to(device))[0]
            assert set(plain) == {"boxes", "scores", "labels"} and torch.equal(plain["boxes"], alone["boxes"])
    finally:
        model.cpu()


@pytest.mark.parametrize("name", DETECTORS)
def test_predict_thresholds_act_inside_the_detector(name, shipped_models, test_images):
    model = shipped_models[name]
    image = test_images[:1]
    assert len(model.predict(image, score_threshold=1.0)[0]["scores"]) == 0
    assert len(model.predict(image, max_detections=1)[0]["scores"]) == 1
    strict = model.predict(image, nms_threshold=0.3)[0]
    loose = model.predict(image, nms_threshold=1.0)[0]
    assert len(loose["scores"]) > len(strict["scores"])
    iou = tv_box_iou(loose["boxes"], loose["boxes"]).fill_diagonal_(0)
    assert bool((iou[loose["labels"][:, None] == loose["labels"][None, :]] > 0.3).any())


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize("bad", [{"score_threshold": float("nan")}, {"score_threshold": -0.1},
                                 {"nms_threshold": 1.5}, {"nms_threshold": float("inf")}, {"max_detections": 0},
                                 {"max_detections": 2.5}, {"score_threshold": "0.5"}])
def test_predict_rejects_bad_settings(name, bad, shipped_models, test_images):
    with pytest.raises(ValueError):
        shipped_models[name].predict(test_images[:1], **bad)


def test_predict_needs_eval_mode(shipped_models, test_images):
    model = shipped_models["faster-rcnn"]
    model.train()
    try:
        with pytest.raises(RuntimeError, match="eval"):
            model.predict(test_images[:1])
    finally:
        model.eval()


def test_what_the_demos_show_comes_from_the_models(shipped_models, test_images):
    for name in ("faster-rcnn", "faster-rcnn-fpn", "retinanet"):
        levels = shipped_models[name].anchor_levels((128, 128))
        assert sum(len(level.anchors) for level in levels) == sum(
            level.grid[0] * level.grid[1] * level.per_cell for level in levels)
        row, column = levels[0].cell_of(70, 33)
        centre = levels[0].anchors_at(row, column)
        stride = levels[0].stride
        assert torch.allclose((centre[:, :2] + centre[:, 2:]) / 2,
                              torch.tensor([[column * stride, row * stride]], dtype=torch.float32), atol=0.5)
    points = shipped_models["fcos"].point_levels(test_images[0])
    assert [level.stride for level in points] == [8, 16, 32]
    assert [len(level.points) for level in points] == [256, 64, 16]
    detections = shipped_models["fcos"].predict(test_images[:1], score_threshold=0.0, max_detections=100)[0]
    best = max(float(level.scores.max()) for level in points)
    assert math.isclose(float(detections["scores"][0]), best, rel_tol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# The shipped models give the recorded AP


def _first_40(name: str, model) -> list[float]:
    if name == "rcnn":
        return evaluate_rcnn(model, SUBSET, progress=False)["stats"]
    if name == "fast-rcnn":
        return evaluate_fast_rcnn(model, SUBSET, progress=False)["stats"]
    return evaluate_detector(model, SUBSET)["stats"]


@pytest.mark.slow
@pytest.mark.parametrize("name", DETECTORS)
def test_shipped_model_gives_its_recorded_ap(name, shipped_models):
    file_name, key = registry.get(name).record
    recorded = results.read(file_name)[key][f"test_first_{SUBSET}"]
    ap, ap50 = _first_40(name, shipped_models[name])[:2]
    assert abs(ap - recorded["AP"]) <= 0.01 and abs(ap50 - recorded["AP50"]) <= 0.01, (ap, ap50, recorded)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", MODELS)
def test_mixed_precision_training_steps_on_cuda(name, tmp_path):
    """On CUDA the loop trains under float16 autocast with a GradScaler: the losses stay finite, the weights
    move, and the model still predicts in float32."""
    options = QUICK[name] | {"epochs": 2} if name != "single-object" else QUICK[name] | {"steps_per_epoch": 4}
    model, history = registry.train(name, device="cuda", checkpoint_path=tmp_path / "run.pt", **options)
    assert all(math.isfinite(v) for v in history["total"]) and history["device"].startswith("cuda")
    state = torch.load(tmp_path / "run.pt", weights_only=True)
    assert "_scale" in state["scaler"] and state["scaler"]["_scale"] > 0  # the scaler was enabled and saved
    assert next(model.parameters()).dtype == torch.float32 and next(model.parameters()).is_cuda
    if registry.get(name).task == "detection":
        image = DigitCanvases("test", size=1, seed=0)[0][0][None].cuda()
        result = model.predict(image, score_threshold=0.0)[0]
        assert result["boxes"].dtype == torch.float32 and torch.isfinite(result["boxes"]).all()


@pytest.mark.parametrize("name", MODELS)
def test_every_training_set_builds_with_progress_bars(name, capsys):
    data = registry.get(name).make_training_set(2, seed=0, progress=True)
    assert len(data) >= 2 and len(data.batches(0, 2, seed=0)) >= 1
    batch = data.collate(data.batches(0, 2, seed=0)[0], torch.device("cpu"))
    assert isinstance(batch, dict) and batch
