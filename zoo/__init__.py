"""zoo: a compact generative-model zoo with one Generator interface and one honest benchmark."""
from .version import __version__  # noqa: E402

from .errors import ZooError  # noqa: E402
from .api import Generator, ModelConfig, register_model, get_model, get_model_class, list_models, save, load  # noqa: E402
from . import models  # noqa: E402,F401  (registers the package's own families)
from .metrics.compare import evaluate_source as evaluate  # noqa: E402
from .sampling import sample_images  # noqa: E402
from . import train  # noqa: E402  (a callable package: zoo.train(family, out, ...) trains; zoo.train.fit is the loop)

__all__ = ["Generator", "ModelConfig", "ZooError", "register_model", "get_model", "get_model_class",
           "list_models", "save", "load", "evaluate", "sample_images", "train", "__version__"]
