"""From-scratch PyTorch code for EECS 498.008 (Winter 2022), Lectures 12-18.

Layout (imports flow from the foundation up; tests/test_layout.py enforces the direction):

    foundation   ops/ (tensor functions), metrics/, data/, checkpoints/, results/, plotting/, device.py
    models       detection/ (Lectures 13-14), models/ (EfficientNet-Lite0); segmentation/, rnn/, ... to come
    training     training/: THE loop (fit), recipes, torchrun/DDP, records
    on top       registry.py (every trainable model), lecture12/ 13/ 14/ (page examples), figures/,
                 tables.py, demos/ (Gradio + the server), cli.py (`lectures ...` / `python -m lectures_code`)
"""

from lectures_code.device import get_device

__all__ = ["get_device"]
__version__ = "0.1.0"
