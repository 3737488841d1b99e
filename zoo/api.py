"""The Generator contract, the model registry and run-directory save/load (no pickle).

A family subclasses :class:`Generator`, declares a ``Config`` dataclass (a subclass of
:class:`ModelConfig`) and registers itself with ``@register_model("name")``. The trainer
only ever calls ``param_groups``, ``configure_optimizer``, ``loss``, ``begin_stage`` and
the ``stages``/``phases`` declarations; it never names a family.

Image range: ``loss`` and ``log_prob`` take float images in [-1, 1] (see ``zoo.images``);
``sample`` returns uint8 (N, C, H, W) on the CPU.

Conditioning: a model built with ``config.cond_dim = D > 0`` is conditioned on a text embedding
``cond`` (B, D) float, the pooled output of the frozen text encoder ``config.text_encoder``. The
trainer passes each image's embedding as the second argument of ``loss``; ``sample`` and
``generate`` take it as ``cond``: the contract takes vectors, and ``zoo.text.embed_prompts`` turns
prompts into them. The *null condition* (:meth:`Generator.null_condition`) is the zero vector:
training replaces a share ``config.cond_drop`` of the rows by it
(:meth:`Generator.condition_for_training`), and ``cond=None`` samples from it, so a conditional
model still samples unconditionally. A network takes :meth:`Generator.condition_for_network`. Families with ``guidance = True`` mix the two predictions with
classifier-free guidance, ``null + w * (cond - null)``: w = 0 is unconditional, w = 1 plain conditional.
With ``cond_dim = 0`` (the default) a family builds no conditioning layers and draws nothing extra,
so unconditional runs are unchanged.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from . import dist, rng
from .config import from_dict, to_dict, apply_overrides, split_sets
from .errors import ZooError
from .files import CONFIG_FILE, WEIGHTS_FILE, atomic_write_text, file_mode, load_weights  # noqa: F401  (re-exported)
from .images import to_uint8
from .version import __version__



@dataclasses.dataclass
class ModelConfig:
    """Fields every family has. Families subclass this and add their own below."""
    channels: int = 1          # image channels, set from the data
    image_size: int = 28       # square images, set from the data
    lr: float = 2e-4           # learning rate used by the default optimizer
    cond_dim: int = 0          # width of the text embedding the model is conditioned on; 0: unconditional
    text_encoder: str = ""     # the frozen text encoder (zoo.text.encoder) whose embeddings it takes
    cond_drop: float = 0.1     # share of training images whose condition is replaced by the null one
    # fields that older config.json files carry and ModelConfig no longer has, with the values that
    # meant "unused": config.from_dict drops them, and refuses any other value in one line
    removed_fields: ClassVar[dict[str, tuple[Any, ...]]] = {"num_classes": (0, 10)}

    def check_probabilities(self) -> None:
        """A one-line ZooError for the first probability-like field (by name: ``*_drop`` in [0, 1],
        ``*dropout`` and ``*ema_decay`` in [0, 1)) that is not a finite number in its range."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "cond_drop" or f.name.endswith("_drop"):
                ok, where = isinstance(v, (int, float)) and 0 <= v <= 1, "[0, 1]"
            elif f.name.endswith(("dropout", "ema_decay")):
                ok, where = isinstance(v, (int, float)) and 0 <= v < 1, "[0, 1)"
            else:
                continue
            if not ok or isinstance(v, bool):   # nan fails every comparison, so it is refused too
                raise ZooError(f"{f.name} must be a number in {where}, got {v!r}")


def halvings(factor: int) -> int:
    """log2(factor) when ``factor`` is a power of two >= 2 (the resolution levels a ``factor`` times
    smaller image lacks), else 0."""
    return factor.bit_length() - 1 if factor >= 2 and not factor & (factor - 1) else 0


class Generator(nn.Module):
    """Base class of every family. See ARCHITECTURE.md for the contract."""

    Config: ClassVar[type] = ModelConfig
    name: ClassVar[str] = ""                       # set by @register_model
    phases: ClassVar[tuple[str, ...]] = ("main",)  # optimizer phases, in the order they run each step
    stages: ClassVar[dict[str, tuple[str, ...]] | None] = None  # None -> {"main": phases}
    likelihood: ClassVar[str] = "none"             # "exact" | "bound" | "none"
    guidance: ClassVar[bool] = False               # generate() takes a classifier-free guidance scale
    has_latent: ClassVar[bool] = False             # supports interpolate()
    in_default_bench: ClassVar[bool] = True        # run by `zoo bench --families all` (False: only when named)

    def __init__(self, config: ModelConfig):
        super().__init__()
        if isinstance(config, ModelConfig):
            config.check_probabilities()
        self.config = config

    @classmethod
    def tiny_config(cls, **fields) -> ModelConfig:
        """A very small config of this family for fast tests; ``fields`` (e.g. image shape) pass through."""
        return cls.Config(**fields)

    @classmethod
    def lower_resolution_config(cls, config: ModelConfig, factor: int) -> ModelConfig:
        """``config``, whose image size is ``factor`` times below the size the family's defaults
        describe (28), adapted to it: a family whose widths stand for resolution levels drops the
        levels the smaller image lacks (see :func:`halvings`). The default returns ``config``
        unchanged, for families that take any size. The cascade builds its base through this."""
        return config

    # ---- training contract --------------------------------------------------------------
    @classmethod
    def stage_plan(cls) -> dict[str, tuple[str, ...]]:
        """Stages in training order, each with the phases that run every step in it."""
        return dict(cls.stages) if cls.stages is not None else {"main": tuple(cls.phases)}

    def stage_fractions(self) -> dict[str, float]:
        """Share of the training budget for each stage (sums to 1). Default: equal shares."""
        plan = self.stage_plan()
        return {s: 1.0 / len(plan) for s in plan}

    # (up to TFLOP, settings) in increasing order, read by the default ``recipe``; the last also
    # covers larger budgets. Empty: the config's defaults at every budget.
    budget_rules: ClassVar[tuple[tuple[float, dict[str, Any]], ...]] = ()

    @classmethod
    def recipe(cls, tflops: float) -> dict[str, Any]:
        """How this family's config follows a training budget of ``tflops`` TFLOP: ``--set``-style
        overrides, a model field as ``KEY`` and a trainer field as ``train.KEY`` (batch size, schedule).
        The trainer never reads it: ``zoo train --tflops`` and ``zoo bench`` apply it, and a user's own
        ``--set``/``--batch-size`` win over it. Default: the first of ``budget_rules`` that covers
        ``tflops`` (:func:`by_budget`), or none."""
        return by_budget(tflops, list(cls.budget_rules)) if cls.budget_rules else {}

    # the size axis (``zoo train --size``, ``zoo bench --param-scale``, the isoflop profile): every model field
    # that sets a width of one of the family's networks, with the multiple its scaled values round to
    # (attention heads, even channel counts). Empty: the family has no size axis. See zoo.sizing.
    size_fields: ClassVar[dict[str, int]] = {}
    # the depth axis (``zoo train --depth``, ``zoo bench --depth``): every model field that counts repeated
    # blocks (layers, flow steps, residual blocks), with the least value it may take. Empty: no depth axis.
    depth_fields: ClassVar[dict[str, int]] = {}
    # the size rule the isoflop sweeps fitted (results/isoflop/ISOFLOP.md): (a, c) of
    # log10 N_opt = c + a * log10(C / 1 TFLOP), N_opt the parameters of the best size at a budget of C
    # TFLOP. Used only where asked for (``zoo train --size fitted``, ``zoo bench --sizes fitted``). A rule is
    # taken once the minima of three budgets or more give its exponent a standard error; None until then.
    size_rule: ClassVar[tuple[float, float] | None] = None
    # sampler options every ``zoo bench`` cell of this family draws its samples with (the flow's
    # temperature), recorded in the cell's settings as ``sampler``. They change no training, so a cell
    # recorded with other ones is measured again on its trained run folder. Empty: the sampler's defaults.
    sampler_settings: ClassVar[dict[str, Any]] = {}

    def begin_stage(self, stage: str, images: torch.Tensor) -> None:
        """Hook called once when a stage starts (not again on resume). ``images``: uint8 train set."""

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters for each phase. Default: everything in the single phase."""
        phases = [p for ps in self.stage_plan().values() for p in ps]
        if len(phases) != 1:
            raise NotImplementedError(f"{type(self).__name__} has phases {phases}: override param_groups")
        return {phases[0]: [p for p in self.parameters() if p.requires_grad]}

    def configure_optimizer(self, phase: str, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """The optimizer for one phase. Default: Adam at ``config.lr``."""
        return torch.optim.Adam(params, lr=self.config.lr, betas=(0.9, 0.99))

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None, *, phase: str = "main") -> dict[str, torch.Tensor]:
        """Named losses for one phase on a batch x (B,C,H,W) in [-1, 1]; ``"loss"`` is optimized.
        ``cond``: the batch's text embeddings (B, cond_dim) for a conditional model, else None."""
        raise NotImplementedError

    # ---- conditioning ---------------------------------------------------------------------
    @property
    def is_conditional(self) -> bool:
        """Whether this model was built to take a text embedding (``config.cond_dim > 0``)."""
        return getattr(self.config, "cond_dim", 0) > 0

    def null_condition(self, batch: int) -> torch.Tensor:
        """The null condition: zeros (batch, cond_dim) on the model's device."""
        return torch.zeros(batch, self.config.cond_dim, device=self.device)

    def condition_for_training(self, cond: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """The condition a ``loss`` trains on: None for an unconditional model (a ``cond`` given to one is
        a one-line ZooError); else ``cond`` (or the null condition when None), (batch, cond_dim), with
        each row replaced by the null one with probability ``config.cond_drop`` while training (drawn
        from torch's global RNG, which the trainer seeds), so one network learns both the conditional
        and the unconditional model."""
        if cond is None:
            return self.null_condition(batch) if self.is_conditional else None
        self.check_condition(cond, batch)
        p = float(self.config.cond_drop)
        if p <= 0 or not self.training:
            return cond
        keep = (torch.rand(batch, 1, device=cond.device) >= p).to(cond.dtype)   # (B, 1)
        return cond * keep

    def condition_for_network(self, cond: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """The condition a network takes for ``batch`` inputs: None for an unconditional model (a ``cond``
        given to one is a one-line ZooError); else ``cond`` checked and on the model's device, or the
        null condition when it is None: (batch, cond_dim)."""
        if cond is None:
            return self.null_condition(batch) if self.is_conditional else None
        self.check_condition(cond, batch)
        return cond.to(self.device)

    def check_condition(self, cond: torch.Tensor, batch: int) -> None:
        """A one-line ZooError unless ``cond`` is (batch, cond_dim) floats for a conditional model."""
        if not self.is_conditional:
            raise ZooError(f"this {self.name} model is unconditional: it takes no prompt (train it with --conditional)")
        if not (torch.is_tensor(cond) and cond.is_floating_point() and tuple(cond.shape) == (batch, self.config.cond_dim)):
            got = tuple(cond.shape) if torch.is_tensor(cond) else type(cond).__name__
            raise ZooError(f"cond must be float ({batch}, {self.config.cond_dim}), got {got}")

    def guided(self, fn, x_args: tuple, cond: torch.Tensor | None, guidance: float):
        """Classifier-free guidance for ``guidance = True`` families: ``fn(*x_args, c)`` evaluated at the
        null condition and at ``cond`` and mixed as ``null + w * (cond - null)``. One evaluation when
        w = 0 (null only), w = 1 or cond is None (cond only); else one call on the doubled batch."""
        b = x_args[0].shape[0]
        if cond is None or guidance == 0:
            return fn(*x_args, self.null_condition(b) if self.is_conditional else None)
        if guidance == 1:
            return fn(*x_args, cond)
        both = fn(*(torch.cat([a, a]) if torch.is_tensor(a) else a for a in x_args), torch.cat([self.null_condition(b), cond]))
        null, c = both[:b], both[b:]
        return null + guidance * (c - null)

    # ---- sampling contract --------------------------------------------------------------
    def generate(self, gens: list[torch.Generator], cond: torch.Tensor | None = None, **sampler) -> torch.Tensor:
        """Float images (len(gens), C, H, W) in [-1, 1]; image i uses only gens[i] for randomness.
        ``cond``: (B, cond_dim) text embeddings, or None for the null condition (unconditional).
        ``guidance`` (a sampler option of ``guidance = True`` families only) is the CFG scale."""
        raise NotImplementedError

    def nfe(self, **sampler) -> int:
        """Network evaluations per sample for these sampler options (1 for one-shot decoders)."""
        return 1

    @torch.no_grad()
    def sample(self, n: int, *, seed: int = 0, cond: torch.Tensor | None = None, batch_size: int = 256,
               progress: bool = False, offset: int = 0, **sampler) -> torch.Tensor:
        """``n`` images as uint8 (n, C, H, W) on the CPU. Image i depends only on (seed, i) and its condition.

        ``offset``: return images offset .. offset+n-1 of the seed's sequence (the tail of a longer
        ``sample``), without drawing the ones before.

        ``cond``: (n, cond_dim) text embeddings (``zoo.text.embed_prompts`` makes them from prompts);
        None: unconditional samples (the null condition).
        ``guidance=W`` (families with ``guidance = True``) sets the classifier-free guidance scale."""
        if n < 0:
            raise ZooError(f"n must be >= 0, got {n}")
        if batch_size < 1:
            raise ZooError(f"batch_size must be >= 1, got {batch_size}")
        if offset < 0:
            raise ZooError(f"offset must be >= 0, got {offset}")
        if "guidance" in sampler and not self.guidance:
            if float(sampler["guidance"]) != 1.0:
                raise ZooError(f"family {self.name!r} has no classifier-free guidance: --guidance must be 1")
            sampler.pop("guidance")
        if cond is not None:
            self.check_condition(cond, n)
        c = self.config
        # inside zoo.dist.sharded() under torchrun, this rank draws a contiguous block of the same
        # batches and the blocks are gathered: identical images, 1/world of the work per rank
        mine, first, end = dist.my_batches(n, batch_size)
        out = torch.empty(end - first, c.channels, c.image_size, c.image_size, dtype=torch.uint8)
        bar = None
        try:
            with self.sampling_mode():
                for s, gens in rng.batches(seed, n, batch_size, only=mine, offset=offset):
                    b = len(gens)
                    cb = cond[s:s + b].to(self.device) if cond is not None else None
                    # (b, C, H, W); a family written before conditioning (no cond argument) still samples
                    x = self.generate(gens, cond=cb, **sampler) if cb is not None else self.generate(gens, **sampler)
                    out[s - first:s - first + b] = to_uint8(x)
                    if progress and bar is None and dist.is_main():  # shown once a batch has worked:
                        from tqdm.auto import tqdm                   # a bad option prints one line
                        bar = tqdm(total=len(mine), desc=f"sample {self.name}", unit="batch", leave=False)
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return dist.gather_shard(out)

    @contextlib.contextmanager
    def sampling_mode(self) -> Iterator[None]:
        """Eval mode, with per-sample draws (``zoo.rng``) made on the model's device; the previous
        train/eval mode comes back at the end. Every batched sampler of a family runs inside it."""
        was_training = self.training
        self.eval()
        try:
            with rng.device_scope(self.device):
                yield
        finally:
            self.train(was_training)

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) in nats per image for 8-bit images x in [-1, 1]: exact or a lower bound
        (of p(x | cond) for a conditional model given ``cond``)."""
        raise ZooError(f"family {self.name!r} has no likelihood (likelihood='none')")

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, *, steps: int = 8) -> torch.Tensor:
        """Decode ``steps`` points on the line between the latents of uint8 images a and b (each (C,H,W))."""
        raise ZooError(f"family {self.name!r} has no latent space to interpolate in")

    def trajectory(self, n: int, *, seed: int = 0, frames: int = 8, **sampler) -> torch.Tensor:
        """uint8 (n, frames, C, H, W): the model's running prediction of the final image while sampling."""
        raise ZooError(f"family {self.name!r} samples in one shot: no trajectory to show")

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters (CPU for a model without any)."""
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def num_params(self) -> int:
        """Every parameter of the model (all phases and stages, the mixture prior's included): the
        count that ``zoo list``, the trainer's summary and the bench tables report."""
        return sum(p.numel() for p in self.parameters())


# ---- registry ----------------------------------------------------------------------------
# Filled by @register_model as family modules are imported. The package's own families are
# imported by ``zoo/__init__.py`` (through ``zoo.models``); this module never imports a family.
_REGISTRY: dict[str, type[Generator]] = {}


def register_model(name: str):
    """Class decorator: register a Generator subclass under ``name``; duplicates are refused."""
    def deco(cls: type[Generator]) -> type[Generator]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].__qualname__})")
        if not (isinstance(cls, type) and issubclass(cls, Generator)):
            raise TypeError(f"@register_model({name!r}) needs a Generator subclass")
        if not (dataclasses.is_dataclass(cls.Config) and issubclass(cls.Config, ModelConfig)):
            raise TypeError(f"{cls.__name__}.Config must be a dataclass subclassing ModelConfig")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return deco


def unregister_model(name: str) -> type[Generator]:
    """Remove family ``name`` from the registry and return its class: the undo of ``register_model``,
    for code that registers a family for a while (tests, plugins loaded and dropped)."""
    if name not in _REGISTRY:
        raise KeyError(f"model {name!r} is not registered")
    return _REGISTRY.pop(name)


def list_models() -> list[str]:
    """Registered family names, sorted."""
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[Generator]:
    """The class registered under ``name``, or a one-line ZooError listing the known names."""
    if name not in _REGISTRY:
        raise ZooError(f"unknown model {name!r} (known: {', '.join(sorted(_REGISTRY))}; a family of your own "
                       f"needs --import MODULE or a zoo.families entry point)")
    return _REGISTRY[name]


def get_model(name: str, config: ModelConfig | dict | None = None, **overrides: Any) -> Generator:
    """Build family ``name`` from a config (dataclass or dict), with field overrides."""
    cls = get_model_class(name)
    if config is None:
        config = cls.Config()
    elif isinstance(config, dict):
        config = from_dict(cls.Config, config)
    if overrides:
        config = dataclasses.replace(config, **overrides)
    return cls(config)


def by_budget(tflops: float, rules: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    """For a family's ``recipe``: the settings of the first rule ``(up_to_tflops, settings)`` whose
    bound is at least ``tflops`` (rules in increasing order; the last one also covers larger budgets)."""
    for bound, settings in rules:
        if tflops <= bound:
            return dict(settings)
    return dict(rules[-1][1])


def recipe_sets(cls: type[Generator], tflops: float | None) -> tuple[dict[str, str], dict[str, str]]:
    """The family's recipe for a budget of ``tflops`` (none for a step budget) as (model fields,
    trainer fields) of ``--set`` strings; a recipe naming an unknown field is a one-line ZooError."""
    if tflops is None:
        return {}, {}
    rec = cls.recipe(float(tflops))
    if not isinstance(rec, dict):
        raise ZooError(f"{cls.__name__}.recipe must return a dict, got {type(rec).__name__}")
    return split_recipe(rec)


def split_recipe(rec: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """A recipe (as ``Generator.recipe`` returns it, or as a bench cell records it) as (model fields,
    trainer fields) of ``--set`` strings, split as ``--set`` items are."""
    return split_sets(f"{k}={_set_string(v)}" for k, v in rec.items())


def _set_string(v: Any) -> str:
    """A recipe value as the ``--set`` string it stands for (tuples as 'a,b,c')."""
    if isinstance(v, (tuple, list)):
        return ",".join(str(x) for x in v)
    return str(v)


def recipe_model(family: str, tflops: float, shape: tuple[int, int, int] = (1, 28, 28),
                 extra: dict[str, str] | None = None) -> Generator:
    """Family ``family`` as a run trained for ``tflops`` TFLOP builds it (``zoo train --tflops``, a bench
    cell): its default config for images of ``shape`` with the model fields of its recipe applied (a
    VAE's mixture prior, say), then ``extra`` (``--set`` strings: the widths of a size,
    ``zoo.sizing.sized_model``), so that ``num_params`` counts what such a run trains."""
    return build_model(family, shape, {**recipe_sets(get_model_class(family), tflops)[0], **(extra or {})})


def build_model(family: str, shape: tuple[int, int, int], overrides: dict[str, str] | None = None, *,
                tiny: bool = False) -> Generator:
    """Family ``family`` shaped for images of ``shape`` (C, H, W), at its default config (or its tiny
    test config), with ``--set``-style string overrides parsed by field type. Any config the family
    rejects becomes a one-line ZooError, raised before anything is written."""
    cls = get_model_class(family)
    c, h, w = shape
    if h != w:
        raise ZooError(f"images must be square, got {h}x{w}")
    cfg = cls.tiny_config(channels=c, image_size=h) if tiny else cls.Config(channels=c, image_size=h)
    cfg = apply_overrides(cfg, overrides or {})
    try:
        return cls(cfg)
    except ZooError:
        raise
    except (ValueError, AssertionError, RuntimeError, IndexError, TypeError, ZeroDivisionError) as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ZooError(f"bad config for {family}: {msg}") from None


# ---- save / load -------------------------------------------------------------------------
def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split(".")[:3])
    except ValueError:
        raise ZooError(f"bad version string {v!r} in config") from None


def config_record(model: Generator) -> dict:
    return {"family": model.name, "zoo_version": __version__, "config": to_dict(model.config)}


def save(model: Generator, run_dir: str | os.PathLike, *, weights_name: str = WEIGHTS_FILE) -> None:
    """Write config.json (family key, package version, config) and safetensors weights to run_dir."""
    from safetensors.torch import save_model
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, json.dumps(config_record(model), indent=2))
    tmp = run_dir / (weights_name + ".tmp")
    save_model(model, str(tmp))
    os.chmod(tmp, file_mode())   # safetensors creates 0600; every other file follows the umask
    os.replace(tmp, run_dir / weights_name)


def read_config(run_dir: str | os.PathLike) -> tuple[type[Generator], ModelConfig, dict]:
    """Parse and validate run_dir/config.json: returns (class, config, raw record)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ZooError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    try:
        rec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ZooError(f"{path}: not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    if not isinstance(rec, dict) or "family" not in rec or "config" not in rec:
        raise ZooError(f"{path}: missing 'family' or 'config'")
    saved = str(rec.get("zoo_version", "0"))
    if _version_tuple(saved) > _version_tuple(__version__):
        raise ZooError(f"{path}: written by zoo {saved}, newer than this zoo {__version__}; upgrade zoo")
    cls = get_model_class(str(rec["family"]))
    cfg = from_dict(cls.Config, rec["config"])
    return cls, cfg, rec


def load(run_dir: str | os.PathLike, *, weights_name: str = WEIGHTS_FILE,
         device: str | torch.device = "cpu") -> Generator:
    """Rebuild a model from a run directory written by :func:`save` (or by the trainer), in eval mode
    on ``device`` (e.g. "cuda"; the weights are read on the CPU and moved there)."""
    cls, cfg, _ = read_config(run_dir)
    model = cls(cfg)
    load_weights(model, Path(run_dir) / weights_name)
    model.eval()
    try:
        return model.to(device)
    except (RuntimeError, AssertionError, ValueError) as e:   # a bad name, or no such device here
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"cannot move the model to device {str(device)!r}: {msg[:200]}") from None
