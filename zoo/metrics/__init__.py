"""Sample-quality and likelihood metrics.

  features.py    feature extractors: fmnist-cnn (default, packaged weights) and inception (optional extra)
  fid.py kid.py prdc.py   FID, KID, precision/recall, density/coverage, memorization
  classifier.py  the fmnist-cnn network, its training and the classifier score
  evaluate.py    evaluate(), the cached reference statistics, real_vs_real() / noise_ceiling()
  bpd.py         bits/dim from a model's log_prob
  cli.py         `zoo eval` and `zoo features train`

Typical use::

    from zoo.metrics import evaluate
    res = evaluate(samples_uint8, data="fashion-mnist", features="fmnist-cnn")
"""
from .evaluate import evaluate, noise_ceiling, real_vs_real, reference_features  # noqa: F401
from .features import get_extractor  # noqa: F401
