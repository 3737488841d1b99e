"""The one exception type for user mistakes: the CLI prints it as one line and exits 2."""


class ZooError(ValueError):
    """A user-facing error: bad input, bad path, bad option. Printed without a traceback."""
