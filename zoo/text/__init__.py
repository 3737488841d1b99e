"""Text for text-to-image work: reproducible, checkable captions of labelled images (captions.py),
the frozen text encoders a conditional generator takes (encoder.py), and ``embed_prompts``, which
turns prompts into the ``cond`` vectors of ``Generator.sample``."""
from .captions import (ATTRIBUTES, FASHION_MNIST_NAMES, FILLER, FOREGROUND, SYNTHETIC_NAMES,  # noqa: F401
                       TEMPLATES, Captioner, class_names_for, measure)
from .encoder import embed_prompts  # noqa: F401
