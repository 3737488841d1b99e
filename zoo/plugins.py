"""Families from outside the package: an entry-point group, or modules named on the command line.

A user's own ``Generator`` subclass registers itself with ``@zoo.register_model("name")`` when its
module is imported. zoo imports such modules from two places:

- the ``zoo.families`` entry-point group of any installed distribution, e.g. in its setup.cfg::

      [options.entry_points]
      zoo.families =
          my_family = my_package.my_module

- ``--import MODULE`` on the command line (repeatable), or ``$ZOO_IMPORT`` (comma-separated),
  which is also how subprocesses started by zoo (the bench's sampling probe) see the same modules.

A run folder never names code to import: loading a run whose family is unknown asks for
``--import`` instead, so a file handed to zoo cannot make it execute a module.
"""
from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points

from .errors import ZooError

ENTRY_POINT_GROUP = "zoo.families"
ENV = "ZOO_IMPORT"
_LOADED: set[str] = set()


def import_module(name: str) -> None:
    """Import ``name`` (a module, dotted or a .py path's stem in the current folder) once, so its
    families register. A missing module or an error inside it is a one-line ZooError."""
    name = name.strip()
    if not name or name in _LOADED:
        return
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())   # as `python -m` does: the user's own modules in the current folder
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            raise ZooError(f"--import {name}: no module named {e.name!r} (run zoo from the folder that holds it, "
                           f"or install it)") from None
        raise ZooError(f"--import {name}: the module failed to import: {e}") from None
    except ZooError:
        raise
    except Exception as e:  # the user's module raised while importing
        raise ZooError(f"--import {name}: the module raised {type(e).__name__}: {str(e).splitlines()[0][:160]}") from None
    _LOADED.add(name)


def remember(names: list[str]) -> None:
    """Add module names to $ZOO_IMPORT so that subprocesses import them too."""
    have = [m for m in os.environ.get(ENV, "").split(",") if m.strip()]
    os.environ[ENV] = ",".join(dict.fromkeys(have + [n.strip() for n in names if n.strip()]))


def load_plugins() -> None:
    """Import the modules of the ``zoo.families`` entry points and of $ZOO_IMPORT (once each)."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value in _LOADED:
            continue
        try:
            ep.load()
        except Exception as e:
            raise ZooError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) failed to load: "
                           f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}") from None
        _LOADED.add(ep.value)
    for name in os.environ.get(ENV, "").split(","):
        import_module(name)
