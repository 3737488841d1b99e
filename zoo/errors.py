"""The two exception types the command line turns into one line instead of a traceback.

``ZooError``: a user mistake (bad input, bad path, bad option): exit status 2.
``RunFailed``: the input was fine but the work failed (a training loss went non-finite, a
benchmark cell failed): exit status 1.
"""


class ZooError(ValueError):
    """A user-facing error: bad input, bad path, bad option. Printed without a traceback, exit 2."""


class RunFailed(RuntimeError):
    """A run that could not finish for a reason other than bad input. Printed as one line, exit 1."""
