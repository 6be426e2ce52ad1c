"""COCO run-length encoding (RLE) of binary masks, written from scratch, equal to ``pycocotools.mask``.

Format. A mask of H x W pixels is read column by column (column-major, "Fortran" order: pixel (y, x)
is number ``x * H + y``) and stored as the lengths of its runs, alternating background / foreground
and always starting with a (possibly empty) background run: the 4 x 5 mask with ones at rows 1-2,
columns 1-3 is ``{"size": [4, 5], "counts": [5, 2, 2, 2, 2, 2, 5]}`` ("uncompressed" RLE, a list of
ints summing to H * W). COCO also stores the counts as a short ASCII string ("compressed" RLE,
``"counts": "5220003"``): every count, minus the count two places before it (from the 4th on), is
written 5 bits per character, low bits first, each character ``48 + bits`` with 0x20 set when
another character follows, the last one carrying the sign in 0x10 (a LEB128-like code).

Functions (masks here are [H, W] or batches [N, H, W], numpy or torch, any dtype: nonzero = 1;
pycocotools stacks batches as [H, W, N] instead):
- ``rle_encode(masks, compressed=False)``: masks -> RLE dicts (``pycocotools.mask.encode`` gives the
  compressed form as bytes; ours gives str, which pycocotools also accepts);
- ``rle_decode(rles)``: RLE dicts (either form) -> bool masks; ``rle_compress`` / ``rle_decompress``
  switch forms (``rle_compress`` of an uncompressed RLE is ``frPyObjects``);
- ``rle_area``, ``rle_to_bbox`` (xywh of the tight box, float64), ``rle_iou(dts, gts, iscrowd)``,
  ``rle_merge(rles, intersect=False)``.
Everything works on a whole batch at once (numpy, no loop over masks or runs): a batch of RLEs is one
array of all counts plus offsets (``RleBatch``).

IoU (``rle_iou``) as pycocotools' C ``rleIou``: intersection / union counted in pixels, where the union
is the detection's own area when the GT is a crowd region; 0 when the masks' tight boxes do not
overlap; -1 when they overlap but the two masks have different sizes (pycocotools' marker of a size
mismatch). Intersections are counted on the runs, never on decoded pixels: a foreground run [s, e) of
the GT covers ``F(e) - F(s)`` foreground pixels of the detection, with F(x) = the detection's
foreground pixels before position x, read off its runs by binary search.

Deviations (documented, tested): counts that do not sum to H * W, negative counts and malformed
strings raise ValueError (pycocotools reads past the data or returns garbage); ``rle_merge`` of masks
of different sizes raises (pycocotools returns an empty 0 x 0 RLE); empty inputs give empty arrays
(pycocotools returns []). Polygon segmentations are not RLE and are not handled here.
"""

from __future__ import annotations

from itertools import chain
from typing import NamedTuple

import numpy as np

MAX_CHARS = 7  # a count < 2^32, minus another one, needs at most 7 characters of 5 bits (+ sign)


class RleBatch(NamedTuple):
    """N RLEs in flat arrays: RLE i has size ``heights[i] x widths[i]`` and the run lengths
    ``counts[offsets[i]:offsets[i + 1]]`` (background first)."""

    heights: np.ndarray  # int64 [N]
    widths: np.ndarray  # int64 [N]
    counts: np.ndarray  # int64 [total number of runs]
    offsets: np.ndarray  # int64 [N + 1]

    @property
    def lengths(self) -> np.ndarray:  # int64 [N], runs per RLE
        return np.diff(self.offsets)


def _index_in_segment(lengths: np.ndarray) -> np.ndarray:
    """[0, 1, ..., lengths[0] - 1, 0, 1, ..., lengths[1] - 1, ...]: position within each segment."""
    starts = np.cumsum(lengths) - lengths  # [N]
    return np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)


# ----------------------------------------------------------------------------------------------
# Reading and writing RLE dicts


def _as_masks(masks) -> tuple[np.ndarray, bool]:
    """bool [N, H, W] from an [H, W] or [N, H, W] array or tensor; second value: was it a single mask."""
    if hasattr(masks, "detach"):  # a torch tensor, on any device
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.ndim not in (2, 3):
        raise ValueError(f"masks must be [H, W] or [N, H, W], got shape {masks.shape}")
    return (masks != 0).reshape((-1,) + masks.shape[-2:]), masks.ndim == 2


# --8<-- [start:rle_encode]
def encode_batch(masks: np.ndarray) -> RleBatch:
    """Run lengths of N masks bool [N, H, W], all at once."""
    n, h, w = masks.shape
    flat = masks.transpose(0, 2, 1).reshape(n, h * w)  # [N, H*W], column-major pixel order
    # Pixel i starts a new run where it differs from pixel i - 1; a virtual background pixel before the
    # first one makes a mask that starts with foreground begin with an empty background run.
    previous = np.zeros_like(flat)
    previous[:, 1:] = flat[:, :-1]
    mask_index, change = np.nonzero(flat != previous)  # [C] each, mask after mask, pixels in order
    changes = np.bincount(mask_index, minlength=n)  # [N]
    # Mask m's run boundaries are 0, its changes, H*W; a run's length is the gap between two of them.
    first = np.cumsum(changes + 2) - (changes + 2)  # [N] where mask m's boundaries begin
    boundaries = np.zeros(int((changes + 2).sum()), dtype=np.int64)
    boundaries[np.repeat(first + 1, changes) + _index_in_segment(changes)] = change
    boundaries[first + changes + 1] = h * w
    lengths = changes + 1  # runs per mask
    counts = np.delete(np.diff(boundaries), (first + changes + 1)[:-1])  # not the gap from a mask to the next
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return RleBatch(np.full(n, h, dtype=np.int64), np.full(n, w, dtype=np.int64), counts, offsets)
# --8<-- [end:rle_encode]


# --8<-- [start:rle_string]
def strings_from_batch(batch: RleBatch) -> list[str]:
    """The compressed form of every RLE (pycocotools' ``rleToString``), all counts at once."""
    counts, index = batch.counts, _index_in_segment(batch.lengths)
    delta = counts.copy()
    delta[index > 2] -= counts[np.flatnonzero(index > 2) - 2]  # from the 4th count on: minus the one 2 before
    # Write 5 bits per character, low bits first, until what is left is 0 (or -1 for a negative
    # number, once the sign bit 0x10 of the character says so).
    chars = np.zeros((len(delta), MAX_CHARS), dtype=np.uint8)
    written = np.zeros((len(delta), MAX_CHARS), dtype=bool)
    rest, going = delta, np.ones(len(delta), dtype=bool)
    for k in range(MAX_CHARS):
        bits = rest & 0x1F
        rest = rest >> 5  # arithmetic shift: a negative number stays negative
        more = np.where(bits & 0x10, rest != -1, rest != 0)
        chars[:, k] = 48 + (bits | np.where(more, 0x20, 0))
        written[:, k] = going
        going = going & more
    text = chars[written].tobytes().decode("ascii")  # every count's characters, RLE after RLE
    owner = np.repeat(np.arange(len(batch.heights)), batch.lengths)
    chars_per_rle = np.bincount(owner, weights=written.sum(1), minlength=len(batch.heights)).astype(np.int64)
    ends = np.cumsum(chars_per_rle)
    return [text[end - size : end] for end, size in zip(ends.tolist(), chars_per_rle.tolist())]


def counts_from_strings(strings: list) -> tuple[np.ndarray, np.ndarray]:
    """Decode compressed counts (str or bytes each): (counts int64 [total], runs per string int64 [N])."""
    try:
        if set(map(type, strings)) == {str}:  # the usual case (JSON): one join, one encode
            text = "".join(strings).encode("ascii")
        else:
            text = b"".join(s.encode("ascii") if isinstance(s, str) else bytes(s) for s in strings)
    except UnicodeEncodeError as err:
        raise ValueError("compressed RLE counts must be characters '0' (48) to 'o' (111)") from err
    chars = np.frombuffer(text, dtype=np.uint8) - np.uint8(48)  # [characters], 5 bits + 0x20 "more"
    string_end = np.cumsum(list(map(len, strings)), dtype=np.int64)  # [N]
    if (chars > 63).any():
        raise ValueError("compressed RLE counts must be characters '0' (48) to 'o' (111)")
    sizes = np.diff(string_end, prepend=0)
    if (chars[string_end[sizes > 0] - 1] >= 0x20).any():
        raise ValueError("a compressed RLE string ends in the middle of a number")
    last = np.flatnonzero(chars < 0x20)  # [numbers] the character that ends each number (no 0x20 bit)
    runs = np.diff(np.searchsorted(last, string_end), prepend=0)  # numbers per string
    # A number of n characters: character j holds bits 5j .. 5j + 4, and the last character's 5 bits are
    # signed (0x10 is the sign): SIGNED_LAST[c] is their value.
    values = SIGNED_LAST[chars[last]]  # [numbers], the whole value of the 1-character numbers
    # the few longer numbers (a count that differs by 16 or more from the one two before it)
    longer = np.flatnonzero(chars[np.maximum(last - 1, 0)] >= 0x20)  # the character before is a "more" one
    n_chars = last[longer] - np.concatenate([[-1], last])[longer]  # [longer]
    values[longer] <<= 5 * (n_chars - 1)
    for k in range(1, int(n_chars.max(initial=1))):
        longer, n_chars = longer[n_chars > k], n_chars[n_chars > k]
        values[longer] += (chars[last[longer] - k] & 0x1F).astype(np.int64) << (5 * (n_chars - 1 - k))
    # Undo the differences: count i = value i + count i - 2 for i >= 3 (i counted within its string):
    # running sums along chains that step by 2 and restart at each string's positions 0, 1 and 2.
    return _restarting_sums_by_twos(values, np.cumsum(runs) - runs, runs), runs


SIGNED_LAST = np.array([c & 0x1F if c < 0x10 else c - 0x20 for c in range(64)], dtype=np.int64)


def _restarting_sums_by_twos(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """out[i] = values[i] + out[i - 2], except at the first three positions of every segment
    (``starts``, ``lengths``), where out[i] = values[i]."""
    out = np.empty_like(values)
    restart = np.zeros(len(values), dtype=bool)
    for k in range(3):
        restart[(starts + k)[lengths > k]] = True
    for parity in (0, 1):  # positions 0, 2, 4, ... and 1, 3, 5, ...: each chain is a contiguous slice
        chain = values[parity::2]
        begins = np.flatnonzero(restart[parity::2])  # where chains begin (the first element always does)
        running = np.cumsum(chain)
        total_before = np.concatenate([[0], running])[begins]  # the running sum just before each chain
        chain = chain.copy()
        chain[begins] -= np.diff(total_before, prepend=0)  # take the previous chain's sum off: restart at 0
        out[parity::2] = np.cumsum(chain)
    return out
# --8<-- [end:rle_string]


def _check_sizes(sizes: np.ndarray) -> None:
    if sizes.ndim != 2 or sizes.shape[1] != 2 or (sizes < 0).any():
        raise ValueError("every RLE needs 'size' = [height, width] with height, width >= 0")


def read_rles(rles: list) -> RleBatch:
    """One RleBatch from RLE dicts ``{"size": [h, w], "counts": list of int | str | bytes}``, forms mixed."""
    if len(rles) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return RleBatch(empty, empty, empty, np.zeros(1, dtype=np.int64))
    try:
        sizes = np.asarray([r["size"] for r in rles], dtype=np.int64).reshape(len(rles), -1)
        counts_fields = [r["counts"] for r in rles]
    except (TypeError, KeyError, ValueError) as err:
        raise ValueError("every RLE must be a dict with 'size' = [height, width] and 'counts'") from err
    _check_sizes(sizes)
    kinds = set(map(type, counts_fields))
    if kinds <= {str, bytes}:  # all compressed (no per-RLE check needed)
        compressed = np.ones(len(rles), dtype=bool)
    elif kinds <= {list, tuple, np.ndarray}:  # all uncompressed
        compressed = np.zeros(len(rles), dtype=bool)
    else:
        compressed = np.array([isinstance(c, (str, bytes)) for c in counts_fields], dtype=bool)
    lengths = np.zeros(len(rles), dtype=np.int64)
    parts = []  # (RLE indices, their concatenated counts)
    which = np.flatnonzero(compressed)
    if len(which):
        counts, runs = counts_from_strings([counts_fields[i] for i in which])
        lengths[which] = runs
        parts.append((which, counts))
    which = np.flatnonzero(~compressed)
    if len(which):
        lists = [counts_fields[i] for i in which]
        if not set(map(type, lists)) <= {list, tuple, np.ndarray}:
            raise ValueError("RLE 'counts' must be a list of ints (uncompressed) or a str / bytes (compressed)")
        lengths[which] = list(map(len, lists))
        try:
            counts = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(lengths[which].sum()))
        except (TypeError, ValueError) as err:
            raise ValueError("uncompressed RLE counts must be integers") from err
        parts.append((which, counts))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if len(parts) == 1:  # one form only: the counts are already in input order
        all_counts = parts[0][1]
    else:  # put each form's counts in place, RLEs in input order
        all_counts = np.zeros(int(offsets[-1]), dtype=np.int64)
        for which, counts in parts:
            all_counts[np.repeat(offsets[which], lengths[which]) + _index_in_segment(lengths[which])] = counts
    batch = RleBatch(sizes[:, 0].copy(), sizes[:, 1].copy(), all_counts, offsets)
    if (all_counts < 0).any():
        raise ValueError("RLE counts must be >= 0")
    total = np.diff(np.concatenate([[0], np.cumsum(all_counts)])[offsets])  # [N] sum of each RLE's counts
    if (total != batch.heights * batch.widths).any():
        bad = int(np.flatnonzero(total != batch.heights * batch.widths)[0])
        raise ValueError(f"RLE {bad}: counts sum to {int(total[bad])}, not height * width = "
                         f"{int(batch.heights[bad] * batch.widths[bad])}")
    return batch


def _as_list(rles) -> tuple[list, bool]:
    if isinstance(rles, dict):
        return [rles], True
    if not isinstance(rles, (list, tuple)):
        raise TypeError(f"expected an RLE dict or a list of them, got {type(rles).__name__}")
    return list(rles), False


def _dicts(batch: RleBatch, compressed: bool) -> list[dict]:
    strings = strings_from_batch(batch) if compressed else None
    out = []
    for i, (h, w) in enumerate(zip(batch.heights.tolist(), batch.widths.tolist())):
        counts = strings[i] if compressed else batch.counts[batch.offsets[i] : batch.offsets[i + 1]].tolist()
        out.append({"size": [h, w], "counts": counts})
    return out


def rle_encode(masks, compressed: bool = False) -> dict | list[dict]:
    """RLE of a mask [H, W] (one dict) or of a batch [N, H, W] (list of N dicts); nonzero pixels are 1.

    ``compressed=False``: ``"counts"`` is a list of ints (what the COCO JSON of ground truth uses);
    True: a str, the characters of ``pycocotools.mask.encode``'s bytes.
    """
    masks, single = _as_masks(masks)
    out = _dicts(encode_batch(masks), compressed)
    return out[0] if single else out


def rle_compress(rles) -> dict | list[dict]:
    """Compressed form (str counts) of RLE dicts in either form (``frPyObjects`` for uncompressed ones)."""
    rles, single = _as_list(rles)
    out = _dicts(read_rles(rles), compressed=True)
    return out[0] if single else out


def rle_decompress(rles) -> dict | list[dict]:
    """Uncompressed form (list counts) of RLE dicts in either form."""
    rles, single = _as_list(rles)
    out = _dicts(read_rles(rles), compressed=False)
    return out[0] if single else out


# --8<-- [start:rle_decode]
def decode_batch(batch: RleBatch) -> np.ndarray:
    """bool [N, H, W] masks of a batch whose RLEs all have the same size."""
    n = len(batch.heights)
    if n and ((batch.heights != batch.heights[0]).any() or (batch.widths != batch.widths[0]).any()):
        raise ValueError("rle_decode of a list needs RLEs of one size")
    h, w = (int(batch.heights[0]), int(batch.widths[0])) if n else (0, 0)
    is_foreground = _odd_in_segment(batch.offsets, batch.lengths)  # runs alternate, background first
    flat = np.repeat(is_foreground, batch.counts)  # [N * H * W]
    return flat.reshape(n, w, h).transpose(0, 2, 1)  # column-major pixels back to [N, H, W]
# --8<-- [end:rle_decode]


def rle_decode(rles) -> np.ndarray:
    """bool [H, W] for one RLE dict, bool [N, H, W] for a list (of one size); either form."""
    rles, single = _as_list(rles)
    masks = decode_batch(read_rles(rles))
    return masks[0] if single else masks


# ----------------------------------------------------------------------------------------------
# Area, box, IoU, merge


def _odd_in_segment(offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """bool [sum of lengths]: True at the odd positions within each segment (starting at ``offsets``)."""
    odd_globally = np.zeros(int(lengths.sum()), dtype=np.uint8)
    odd_globally[1::2] = 1
    segment_starts_odd = np.repeat((offsets[:-1] & 1).astype(np.uint8), lengths)
    return (odd_globally ^ segment_starts_odd).view(bool)


def _origins(batch: RleBatch) -> np.ndarray:
    """int64 [N]: where each mask's pixel 0 lies when the masks are laid end to end."""
    pixels = batch.heights * batch.widths
    return np.cumsum(pixels) - pixels


class MaskRuns(NamedTuple):
    """The foreground runs of N masks laid end to end (mask i's pixel p is at ``origin[i] + p``, pixels
    column-major): run r covers [start[r], end[r]); mask i's runs are ``runs[i]`` runs from ``first_run[i]``.
    Plus what the IoU of many pairs needs, computed once: sizes, pixel counts and pycocotools' boxes."""

    heights: np.ndarray  # int64 [N]
    widths: np.ndarray  # int64 [N]
    origin: np.ndarray  # int64 [N]
    runs: np.ndarray  # int64 [N], foreground runs per mask
    first_run: np.ndarray  # int64 [N]
    start: np.ndarray  # int64 [F]
    end: np.ndarray  # int64 [F]
    before: np.ndarray  # int64 [F], foreground pixels in all runs before this one
    area: np.ndarray  # int64 [N]
    box: np.ndarray  # float64 [N, 4] xywh


def mask_runs(batch: RleBatch) -> MaskRuns:
    """The foreground runs (the odd counts: runs alternate, background first) and what follows from them."""
    n = len(batch.heights)
    end = np.cumsum(batch.counts)  # [counts] where each run ends, masks laid end to end (they sum to H * W)
    odd = np.flatnonzero(_odd_in_segment(batch.offsets, batch.lengths))
    end, length = end.take(odd), batch.counts.take(odd)  # [F]
    runs = batch.lengths // 2  # [N] a foreground run after every background run
    origin = _origins(batch)
    first_run = np.cumsum(runs) - runs
    total = np.concatenate([[0], np.cumsum(length)])  # foreground pixels in the first r runs
    before, area = total[:-1], total[first_run + runs] - total[first_run]
    start = end - length
    # pycocotools' box (rleToBbox): the columns and rows of each run's first and last pixel; a run that
    # goes on into a later column covers the full height.
    h, local = np.repeat(batch.heights, runs), start - np.repeat(origin, runs)  # [F]
    first_x, first_y = np.divmod(local, h)
    last_x, last_y = np.divmod(local + length - 1, h)
    box = np.zeros((n, 4), dtype=np.float64)
    has = runs > 0
    if has.any():
        seg = first_run[has]
        x0 = np.minimum.reduceat(np.minimum(first_x, last_x), seg)
        x1 = np.maximum.reduceat(np.maximum(first_x, last_x), seg)
        full = np.logical_or.reduceat(last_x > first_x, seg)
        y0 = np.where(full, 0, np.minimum.reduceat(np.minimum(first_y, last_y), seg))
        y1 = np.where(full, batch.heights[has] - 1, np.maximum.reduceat(np.maximum(first_y, last_y), seg))
        box[has] = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1)
    return MaskRuns(batch.heights, batch.widths, origin, runs, first_run, start, end, before, area, box)


# --8<-- [start:mask_iou]
def _covered(a: MaskRuns, a_index: np.ndarray, first: np.ndarray, stop: np.ndarray, b: MaskRuns,
             b_index: np.ndarray) -> np.ndarray:
    """int64 [P]: pixels of mask ``b[b_index[p]]`` inside runs ``first[p]`` .. ``stop[p] - 1`` of the
    batch ``a`` (mask ``a[a_index[p]]``'s runs, moved onto mask b's pixels)."""

    def foreground_before(x):  # x: [Q] positions -> [Q] foreground pixels of b's masks before x
        run = np.maximum(np.searchsorted(b.start, x, side="right") - 1, 0)  # the last run starting <= x
        return b.before[run] + np.clip(x - b.start[run], 0, b.end[run] - b.start[run])

    # Pairs in the order of b's masks, so that the positions searched for increase (almost) throughout:
    # numpy's binary search then starts from the previous answer.
    order = np.argsort(b_index, kind="stable")
    a_index, first, stop, b_index = a_index[order], first[order], stop[order], b_index[order]
    runs = stop - first  # [P]
    pair = np.repeat(order, runs)  # [Q] (original pair numbers)
    run = np.arange(len(pair)) + np.repeat(first - (np.cumsum(runs) - runs), runs)  # [Q] run of a
    shift = np.repeat(b.origin[b_index] - a.origin[a_index], runs)  # pixel p of mask a -> pixel p of mask b
    # a run [s, e) of a covers F(e) - F(s) pixels of b, F(x) = b's foreground pixels before x
    covered = foreground_before(a.end[run] + shift) - foreground_before(a.start[run] + shift)  # [Q]
    return np.bincount(pair, weights=covered, minlength=len(runs)).astype(np.int64)


def pair_intersections(dets: MaskRuns, gts: MaskRuns, det_index: np.ndarray, gt_index: np.ndarray) -> np.ndarray:
    """Pixels in both masks, int64 [P], for the pairs (dets[det_index[p]], gts[gt_index[p]]) (same sizes).

    Only the runs in the columns both tight boxes span can meet. Of each pair, the mask with fewer such
    runs is walked run by run: a run [s, e) covers F(e) - F(s) pixels of the other mask, F(x) = the other
    mask's foreground pixels before x, one binary search in its runs (all pairs, all runs at once).
    """
    d_box, g_box = dets.box[det_index], gts.box[gt_index]
    column0 = np.maximum(d_box[:, 0], g_box[:, 0]).astype(np.int64)  # [P] first shared column
    column1 = np.minimum(d_box[:, 0] + d_box[:, 2], g_box[:, 0] + g_box[:, 2]).astype(np.int64)  # past the last
    ranges = []
    for masks, index in ((dets, det_index), (gts, gt_index)):  # the runs of each mask in those columns
        origin, h = masks.origin[index], masks.heights[index]
        ranges.append((np.searchsorted(masks.end, origin + column0 * h, side="right"),
                       np.searchsorted(masks.start, origin + column1 * h, side="left")))
    (d_first, d_stop), (g_first, g_stop) = ranges
    walk_gt = (g_stop - g_first) <= (d_stop - d_first)
    inter = np.zeros(len(det_index), dtype=np.int64)
    p = np.flatnonzero(walk_gt)
    inter[p] = _covered(gts, gt_index[p], g_first[p], g_stop[p], dets, det_index[p])
    p = np.flatnonzero(~walk_gt)
    inter[p] = _covered(dets, det_index[p], d_first[p], d_stop[p], gts, gt_index[p])
    return inter


def pair_iou(dets: MaskRuns, gts: MaskRuns, det_index: np.ndarray, gt_index: np.ndarray,
             gt_crowd: np.ndarray) -> np.ndarray:
    """pycocotools' mask IoU of the pairs (det_index[p], gt_index[p]) with crowd flags gt_crowd [P]:
    float64 [P]."""
    d, g = dets.box[det_index], gts.box[gt_index]  # [P, 4] xywh
    # pycocotools looks at the pixels only where the tight boxes overlap (elsewhere the IoU is 0) ...
    overlap = ((np.minimum(d[:, 0] + d[:, 2], g[:, 0] + g[:, 2]) - np.maximum(d[:, 0], g[:, 0]) > 0)
               & (np.minimum(d[:, 1] + d[:, 3], g[:, 1] + g[:, 3]) - np.maximum(d[:, 1], g[:, 1]) > 0))
    same_size = (dets.heights[det_index] == gts.heights[gt_index]) & (dets.widths[det_index] == gts.widths[gt_index])
    iou = np.where(overlap & ~same_size, -1.0, 0.0)  # ... and marks masks of different sizes with -1
    todo = np.flatnonzero(overlap & same_size)
    inter = pair_intersections(dets, gts, det_index[todo], gt_index[todo])
    a_det, a_gt = dets.area[det_index[todo]], gts.area[gt_index[todo]]
    union = np.where(gt_crowd[todo], a_det, a_det + a_gt - inter)  # a crowd region: the detection's area
    iou[todo] = np.where(inter > 0, inter / np.maximum(union, 1), 0.0)
    return iou
# --8<-- [end:mask_iou]


def rle_iou(dts, gts, iscrowd) -> np.ndarray:
    """IoU of every detection with every GT, float64 [D, G], like ``pycocotools.mask.iou(dts, gts, iscrowd)``.

    ``dts`` / ``gts``: lists of RLE dicts (either form); ``iscrowd``: G flags (for a crowd GT the union is
    the detection's area). 0 where the tight boxes do not overlap, -1 where they do but sizes differ.
    """
    dts, _ = _as_list(dts)
    gts, _ = _as_list(gts)
    crowd = np.asarray(iscrowd, dtype=bool).reshape(-1)
    if len(crowd) != len(gts):
        raise ValueError(f"iscrowd needs one flag per GT: {len(crowd)} flags for {len(gts)} GTs")
    det_index, gt_index = (i.ravel() for i in np.meshgrid(np.arange(len(dts)), np.arange(len(gts)), indexing="ij"))
    iou = pair_iou(mask_runs(read_rles(dts)), mask_runs(read_rles(gts)), det_index, gt_index, crowd[gt_index])
    return iou.reshape(len(dts), len(gts))


def rle_area(rles) -> int | np.ndarray:
    """Foreground pixels: an int for one RLE dict, int64 [N] for a list."""
    rles, single = _as_list(rles)
    area = mask_runs(read_rles(rles)).area
    return int(area[0]) if single else area


def rle_to_bbox(rles) -> np.ndarray:
    """Tight box [x, y, w, h] (float64 [4]) of one RLE dict, [N, 4] for a list (pycocotools' ``toBbox``)."""
    rles, single = _as_list(rles)
    box = mask_runs(read_rles(rles)).box
    return box[0] if single else box


def rle_merge(rles, intersect: bool = False) -> dict:
    """Union (or intersection) of RLEs of one size, as a compressed RLE dict (``pycocotools.mask.merge``).

    One RLE comes back unchanged (compressed), as in pycocotools.
    """
    rles, _ = _as_list(rles)
    if not rles:
        raise ValueError("rle_merge needs at least one RLE")
    batch = read_rles(rles)
    if len(rles) == 1:
        return _dicts(batch, compressed=True)[0]
    masks = decode_batch(batch)  # raises for different sizes
    merged = masks.all(axis=0) if intersect else masks.any(axis=0)
    return _dicts(encode_batch(merged[None]), compressed=True)[0]
