"""Lecture 12 · Deep Learning Software: every code example of the lecture as a function."""
