"""The names the notes promise are importable from the package itself."""

import lectures_code.detection as detection


def test_issue_names_are_exported():
    promised = {"box_iou", "box_area", "box_convert", "encode_boxes", "decode_boxes", "nms", "batched_nms",
                "coco_evaluate", "voc_ap", "label_proposals", "crop_and_warp", "selective_search",
                "count_windows", "count_all_windows", "roi_pool", "roi_align"}
    assert promised <= set(detection.__all__)
    for name in detection.__all__:
        assert callable(getattr(detection, name)), name
