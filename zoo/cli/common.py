"""What the command modules share: click settings, the --import and --device options, and checks
that catch a user's mistake before any file or folder is made."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from ..errors import ZooError

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


def _import_callback(ctx, param, value):
    if value:
        from ..plugins import import_module, remember
        remember(list(value))
        for name in value:
            import_module(name)
    return value


def import_option(f):
    """``--import MODULE``: import a module that registers the user's own families (repeatable)."""
    return click.option("--import", "imports", multiple=True, metavar="MODULE", expose_value=False,
                        callback=_import_callback, is_eager=True,
                        help="Import MODULE first, so that the families it registers can be used (repeatable; "
                             "also $ZOO_IMPORT, comma-separated).")(f)


def device_option(f):
    """``--device``: where the model (and the feature network) run."""
    return click.option("--device", default="cpu", metavar="DEVICE",
                        help="torch device: cpu, cuda, cuda:1, mps, ...")(f)


def check_device(device: str) -> str:
    """A torch device string that exists here, or a one-line ZooError."""
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ZooError(f"--device {device!r} is not a torch device (try cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ZooError(f"--device {device}: no CUDA device is available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ZooError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ZooError(f"--device {device}: MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ZooError(f"--device {device}: zoo runs on cpu, cuda or mps")
    return str(dev)


class SeedType(click.ParamType):
    """A seed: an integer torch accepts, 0 .. 2**64 - 1 (checked by zoo.rng.check_seed)."""
    name = "integer"

    def convert(self, value, param, ctx):
        from ..rng import check_seed
        if isinstance(value, int) and not isinstance(value, bool):
            seed = value
        else:
            try:
                seed = int(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not an integer", param, ctx)
        try:
            return check_seed(seed, "")
        except ZooError as e:
            self.fail(str(e).strip(), param, ctx)


SEED = SeedType()


def check_writable(path: str | os.PathLike, what: str = "--out", *, file_ok: bool = False) -> None:
    """Raise a one-line ZooError unless ``path`` could be created: its nearest existing ancestor must
    be a writable folder (checked before any work starts, so no run is lost at the end).
    ``file_ok``: an existing file at ``path`` is the caller's to refuse or replace (its folder is checked)."""
    p = Path(path).absolute()
    anc = p.parent if file_ok and p.is_file() else (p if p.exists() else p.parent)
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ZooError(f"{what} {path}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ZooError(f"{what} {path}: cannot write in {anc} (read-only or no permission)")


def check_positive(**values) -> None:
    """One-line ZooError for the first ``--name value`` that is not >= 1 (None values are skipped)."""
    for name, v in values.items():
        if v is not None and v < 1:
            raise ZooError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def command_line() -> str:
    """The command as the user typed it, for provenance records."""
    return "zoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])
