"""The errors a user can act on. Each prints as one line (``error: ...``) and exits with its code.

- :class:`ConfigError` (exit 2): a bad setting, named by its field and value, with the fix.
- :class:`RecordError` (exit 2): a stage file that is missing, corrupt or fails its checksum, with
  the exact recovery (which marker to delete).
- :class:`NonFiniteError` (exit 3): a NaN/inf in rewards, advantages, loss, gradients, LoRA or
  latents; the stage stops before saving anything of its round.

Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """An error with a one-line message for the user. ``same_on_every_rank``: every process of a
    multi-process stage raises it (so only the main process prints it)."""

    exit_code = 2
    same_on_every_rank = True

    def __str__(self):
        return " ".join(super().__str__().split())  # one line, whatever the message held


class ConfigError(UserError, ValueError):
    """A bad setting. ``ConfigError(field, value, text)`` reads ``field=value text``; a driver that
    knows which variable set the field rewrites the message with the variable's name."""

    def __init__(self, field, value=None, text=None):
        if text is None:  # ConfigError("free text")
            field, text = None, field
        self.field, self.value, self.text = field, value, text
        super().__init__(text if field is None else f"{field}={show(value)} {text}")


class Problems(UserError):
    """Several problems at once (a run's settings, a changed rerun): one line each, all printed."""

    def __init__(self, lines):
        super().__init__(lines[0])
        self.problems = lines


class RecordError(UserError):
    """A stage file that cannot be trusted."""


class NonFiniteError(UserError, ArithmeticError):
    exit_code = 3

    def __init__(self, message, same_on_every_rank=True):
        super().__init__(message)
        self.same_on_every_rank = same_on_every_rank


def show(value):
    """A value as a user typed it: strings quoted, numbers and the rest as they print."""
    return repr(value) if isinstance(value, str) else str(value)


def first_line(err, limit=200):
    """The first line of an exception's message (its type when it has none), at most ``limit`` characters."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:limit]


# A process of a multi-process stage lost its peers mid-collective (the stage scripts and the launcher say it)
LOST_PEER = (
    "lost contact with another process of this run mid-stage (another machine stopped, was killed or is "
    "unreachable; its own output says why): nothing of this stage is marked done; rerun the driver on every "
    "machine to continue"
)
EXIT_LOST_PEER = 1
