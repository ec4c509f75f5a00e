"""One exception type for every user-facing failure.

The CLI prints ``error: <message>`` for a :class:`SqueezeNetError` and exits 2, so
bad input never surfaces as a traceback from deep inside torch. Messages name the
problem and the fix on one line.
"""


class SqueezeNetError(Exception):
    """A user error with a one-line, actionable message."""

    exit_code = 2


class TooLarge(SqueezeNetError):
    """Input over a size limit (pixels, bytes); the server answers 413 for it."""


class Incomplete(SqueezeNetError):
    """The command ran, but some of its work failed and was recorded (sweep points); running
    it again retries that part. Exit code 1, not 2: the input was fine."""

    exit_code = 1


class Interrupted(SqueezeNetError):
    """Ctrl-C, after the work was saved; the shell's convention is exit code 130."""

    exit_code = 130


def require(module_name: str, extra: str):
    """Import an optional dependency or raise a one-line install hint."""
    import importlib

    try:
        return importlib.import_module(module_name)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SqueezeNetError(
            f"optional dependency '{module_name}' is missing; install it with "
            f"`pip install 'squeezenet-toolkit[{extra}]'`"
        ) from e
