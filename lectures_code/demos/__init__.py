"""Gradio demos embedded in the notes, all served by lectures_code/demos/server.py from one process.

DEMOS maps the URL name (/demos/<name>/) to a function that builds the gr.Blocks.
"""
