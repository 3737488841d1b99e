"""The trainer: ``fit()`` and its parts. It knows the Generator contract and nothing of any family.

Budgets are in steps or in training FLOPs; FLOPs are counted once per (stage, phase) step shape
with ``torch.utils.flop_counter.FlopCounterMode`` and converted to a step count for the stage, so
a FLOP budget is hardware-independent and resume-stable.

  config.py      TrainConfig and its validation (ZooError before anything is written)
  loop.py        fit(): the loop over stages and steps; TrainingDiverged, StopRequested
  budget.py      steps per stage from a step or FLOP budget
  flops.py       FLOP counting, once per step shape
  schedule.py    lr warm-up and decay (LambdaLR per phase optimizer)
  ema.py         the EMA copy used for sampling
  sampler.py     seeded batches without replacement
  checkpoint.py  checkpoint save/load: safetensors + JSON metadata, atomic, no pickle
  log.py         log.jsonl
  signals.py     SIGINT/SIGTERM -> finish the step, checkpoint, stop
  rundir.py      the run directory's records and results, and the check that a new run writes over none
  lock.py        the run-folder lock (flock on .lock) that one writing process holds for its life
  run.py         zoo.train(): checks, resume settings, recipe, caption conditioning, bpd.json, as `zoo train`
  state.py       RunState: the counters saved in each checkpoint

Run directory:
  config.json         family, package version, model config (written before training)
  train.json          trainer config, data spec, stages (written before training)
  log.jsonl           one JSON object per log interval (appended; on resume, lines after the
                      checkpoint's step are dropped first)
  checkpoint.safetensors   full state for --resume (weights, EMA, optimizers, schedulers, RNG, counters)
  model.safetensors   EMA weights, what `zoo.load` and sampling use
  summary.json        steps, FLOPs, epochs, wall-clock at the end; the machine (CPU, GPU, threads)
                      and git commit that finished the run
  .lock               held by the process that writes into the folder; a second writer is refused
"""
import sys
import types

from .checkpoint import CHECKPOINT_FILE
from .config import TrainConfig
from .ema import EMA
from .loop import StopRequested, TrainingDiverged, fit
from .run import train

__all__ = ["fit", "train", "TrainConfig", "TrainingDiverged", "StopRequested", "CHECKPOINT_FILE", "EMA"]


class _CallablePackage(types.ModuleType):
    """This package, callable: ``zoo.train(family, out, ...)`` is :func:`zoo.train.run.train`, while
    ``zoo.train.fit`` and ``import zoo.train.loop`` keep reaching the package and its modules."""

    def __call__(self, *args, **kwargs) -> dict:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
