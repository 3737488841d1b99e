"""A family defined outside the zoo package, as a user would write one: imported with `--import`.

``toy_mean`` learns one image (the data mean, by MSE) and samples it plus a little per-sample noise.
``toy_nan`` is the same with a loss that turns non-finite at a chosen step, to test the NaN stop.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

import zoo
from zoo import rng


@dataclasses.dataclass
class ToyConfig(zoo.ModelConfig):
    noise: float = 0.1      # std of the per-sample noise added when sampling
    nan_at: int = 0         # toy_nan: the loss is NaN from this training step on (0: never)
    train_noise: float = 0.0  # std of noise (global RNG) added to the training target: a loss that draws randomness
    lr: float = 1e-2


@zoo.register_model("toy_mean")
class ToyMean(zoo.Generator):
    """One learned image plus noise."""

    Config = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        c = config
        # the image is the output of a linear layer on a constant input: a matmul, so a step counts FLOPs
        self.image = nn.Linear(1, c.channels * c.image_size * c.image_size)
        self.register_buffer("one", torch.ones(1, 1))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def mean_image(self) -> torch.Tensor:
        c = self.config
        return self.image(self.one).view(1, c.channels, c.image_size, c.image_size)

    def loss(self, x, labels=None, *, phase="main"):
        self.calls += 1
        target = x + self.config.train_noise * torch.randn_like(x) if self.config.train_noise else x
        loss = (target - self.mean_image()).pow(2).mean()
        if self.config.nan_at and int(self.calls) >= self.config.nan_at:
            loss = loss * float("nan")
        return {"loss": loss}

    def generate(self, gens, labels=None):
        c = self.config
        mean = self.mean_image()                                           # (1, C, H, W)
        return (mean + c.noise * rng.randn(gens, c.channels, c.image_size, c.image_size)).clamp(-1, 1)


@zoo.register_model("toy_nan")
class ToyNaN(ToyMean):
    """toy_mean whose loss becomes NaN at step ``nan_at`` (default 3)."""

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{"nan_at": 3, **fields})

    def __init__(self, config: ToyConfig):
        if not config.nan_at:
            config = dataclasses.replace(config, nan_at=3)
        super().__init__(config)


@zoo.register_model("toy_recipe")
class ToyRecipe(ToyMean):
    """toy_mean with a budget rule: below 1 TFLOP a smaller batch and less sampling noise."""

    @classmethod
    def recipe(cls, tflops):
        return {"noise": 0.05, "train.batch_size": 16} if tflops < 1 else {"noise": 0.2}
