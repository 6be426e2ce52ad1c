"""From-scratch PyTorch code for EECS 498.008 (Winter 2022), Lectures 12-18.

Layout (imports flow downwards only):

    device.py           picks CUDA, then MPS, then CPU (override: LECTURES_DEVICE)
    data/               data sets built from real images that ship with packages
    lecture12/          Deep Learning Software: every code example of the lecture
    detection/          Lectures 13-14: boxes, NMS, evaluation, proposals, detectors
    cli.py              `lectures ...` / `python -m lectures_code ...`
"""

from lectures_code.device import get_device

__all__ = ["get_device"]
__version__ = "0.1.0"
