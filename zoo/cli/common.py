"""What the command modules share: click settings, the --import and --device options, and checks
that catch a user's mistake before any file or folder is made."""
from __future__ import annotations

import shlex
import sys

import click

from ..checks import check_device, check_positive, check_writable  # noqa: F401  (the commands use them)
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


class SizeType(click.ParamType):
    """A width multiplier (a number; zoo.sizing checks it) or the word 'fitted'."""
    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "fitted":
            return value
        try:
            return float(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'fitted'", param, ctx)


SIZE = SizeType()


def command_line() -> str:
    """The command as the user typed it, for provenance records."""
    return "zoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])
