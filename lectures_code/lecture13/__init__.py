"""Lecture 13 · Object Detection (and the transfer-learning recap that opens it)."""
