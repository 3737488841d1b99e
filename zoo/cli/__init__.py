"""The `zoo` command line: one module per command group, registered explicitly below.

Exit status: 0 on success; 2 for a user's mistake (one line on stderr, nothing half-made left
behind); 1 when the work itself failed (a non-finite training loss, a failed benchmark cell: one
line naming it); 130 when interrupted (Ctrl-C or SIGTERM: the current step is finished and
checkpointed first). Anything else is a bug in zoo and keeps its traceback.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import threading

import click

from ..version import __version__
from ..errors import RunFailed, ZooError
from .bench import bench_group
from .common import CONTEXT, import_option
from .eval import eval_cmd, features_group
from .info import data_cmd, list_cmd
from .sample import sample_cmd
from .text import text_group
from .train import train_cmd


def _say(line: str) -> None:
    """One line on stderr, from rank 0 alone under torchrun (the other ranks exit with the same code)."""
    if not _quiet_rank():
        click.echo(line, err=True)


def _quiet_rank() -> bool:
    """Whether this is a torchrun process other than rank 0 (it keeps quiet)."""
    from .. import dist
    return dist.launched() and os.environ.get("RANK", "0") != "0"


class ZooGroup(click.Group):
    """Turns a ZooError (exit 2) or RunFailed (exit 1) raised by any command into one line on stderr,
    the same whether the command line runs from the `zoo` entry point or in-process (CliRunner)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as e:
            _say(f"error: {e}")
            ctx.exit(2)
        except RunFailed as e:
            _say(f"failed: {e}")
            ctx.exit(1)


def _sigterm_as_interrupt(signum, frame) -> None:
    """SIGTERM takes Ctrl-C's path (exit 130); `zoo train` installs its own graceful handler on top."""
    raise KeyboardInterrupt


@click.group(cls=ZooGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="zoo")
@import_option
def cli():
    """zoo: one Generator interface, eight generative families, one honest benchmark.

    Typical use: `zoo train vae --out runs/vae --tflops 1`, then `zoo sample runs/vae --out grid.png`.
    Exit status: 0 done, 1 the run failed, 2 a mistake in the command, 130 interrupted.
    """
    from ..plugins import load_plugins
    from ..provenance import git_commit
    git_commit()   # pin the commit this command runs (provenance.git_commit reads it once per process)
    load_plugins()


for _cmd in (list_cmd, data_cmd, train_cmd, sample_cmd, eval_cmd, features_group, bench_group, text_group):
    cli.add_command(_cmd)

# errno values that mean the user named a path that cannot be used, rather than a failing machine
_PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def run(args: list[str] | None = None) -> int:
    """Run the command line on ``args`` (default: sys.argv[1:]) and return the exit status; every
    error that is not a bug in zoo is printed as one line on stderr."""
    from ..train import StopRequested
    from .. import dist
    if _quiet_rank():   # torchrun: rank 0 alone prints
        sys.stdout = open(os.devnull, "w")
        os.environ["TQDM_DISABLE"] = "1"
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    rc = 1
    try:
        rv = cli.main(args=args, prog_name="zoo", standalone_mode=False)
        rc = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        return rc
    except click.exceptions.Exit as e:          # --help, --version
        return e.exit_code
    except ZooError as e:
        _say(f"error: {e}")
        return 2
    except RunFailed as e:
        _say(f"failed: {e}")
        return 1
    except click.UsageError as e:               # bad option or argument, as click words it
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        _say(f"error: {e.format_message()}{hint}")
        return 2
    except click.ClickException as e:
        _say(f"error: {e.format_message()}")
        return e.exit_code
    except click.exceptions.Abort as e:         # click turns KeyboardInterrupt and EOFError into Abort
        if isinstance(e.__context__, EOFError):
            _say("error: unexpected end of input")
            return 1
        _say("interrupted")
        return 130
    except (KeyboardInterrupt, StopRequested) as e:
        _say(str(e) or "interrupted")
        return 130
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        _say(f"error: {e.strerror or e}{where}")
        return 2 if e.errno in _PATH_ERRNOS else 1
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
        dist.shutdown(clean=rc == 0)


def main() -> None:
    """Console entry point (`zoo`, `python -m zoo`)."""
    sys.exit(run())
