"""The conditional metrics of real images: the test split's first N images prompted by their own
captions (the values a perfect text-to-image model would reach), for the conditional tables.

    python benchmarks/real_prompt_accuracy.py --n 2000
"""
import argparse

from zoo.data import load_dataset
from zoo.metrics.conditional import conditional_metrics
from zoo.text.encoder import caption_embeddings

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--n", type=int, default=2000)
ap.add_argument("--encoder", default="mlm-m")
a = ap.parse_args()
test = load_dataset("fashion-mnist", "test")
prompts, _ = caption_embeddings(a.encoder, test.images[:a.n], test.labels[:a.n])
m = conditional_metrics(test.images[:a.n], prompts, test.labels[:a.n], encoder=a.encoder)
print(f"real test images 0..{a.n - 1} with their own captions: " + ", ".join(
    f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, float)))
