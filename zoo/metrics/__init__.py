"""Sample-quality and likelihood metrics.

  features.py    feature extractors: fmnist-cnn (default, packaged weights) and inception (optional extra)
  fid.py kid.py prdc.py   FID, KID, precision/recall, density/coverage, memorization
  classifier.py  the fmnist-cnn network, its training and the classifier score
  reference.py   what samples are scored against (a dataset split, any images, saved statistics) and its cache
  evaluate.py    evaluate(), real_vs_real() / noise_ceiling(): metrics of uint8 samples against a Reference
  inputs.py      what a comparison names (tensor, run folder, .npz, image folder, statistics, dataset spec), read
  compare.py     score / floor_and_ceiling / save_source_stats, the work of `zoo eval`; evaluate_source (zoo.evaluate)
  bpd.py         bits/dim from a model's log_prob

The command line (`zoo eval`, `zoo features train`) lives in zoo/cli/eval.py; it parses options and
calls compare.py and :func:`~zoo.metrics.features.train_feature_cnn`.

Typical use::

    from zoo.metrics import evaluate, load_stats
    res = evaluate(samples_uint8, data="fashion-mnist", features="fmnist-cnn")
    res = evaluate(samples_uint8, ref=load_stats("fmnist-test.npz"), metrics="fid,kid")
    import zoo; rec = zoo.evaluate("runs/vae", ref="fashion-mnist", n=5000)   # as `zoo eval runs/vae --n 5000`
"""
from .evaluate import evaluate, noise_ceiling, real_vs_real  # noqa: F401
from .features import get_extractor  # noqa: F401
from .reference import (Reference, dataset_reference, images_reference, load_stats,  # noqa: F401
                        reference_features, save_stats)
