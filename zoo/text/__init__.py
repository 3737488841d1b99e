"""Text for text-to-image work: reproducible, checkable captions of labelled images (captions.py)."""
from .captions import (ATTRIBUTES, FASHION_MNIST_NAMES, FILLER, FOREGROUND, SYNTHETIC_NAMES,  # noqa: F401
                       TEMPLATES, Captioner, class_names_for, measure)
