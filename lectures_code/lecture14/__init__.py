"""Lecture 14 · Object Detectors: page-specific teaching code (the loop versions of RoI Pool / RoI Align)."""
