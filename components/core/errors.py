"""Errors a user can act on. Each message is one line that names the key, file or value to fix."""


class PaperzooError(Exception):
    """Base of every error paperzoo reports as a one-line message (the CLI prints it without a traceback).

    `retryable` says whether running the same thing again can succeed: False for everything a user has to fix
    (a config, a dataset, a rejected token), True only for faults of the machinery around a run (a lost cluster
    job, a Hub that answered 5xx or timed out). Prefect's retry policy (pipelines/flows.py) reads it.
    """

    retryable: bool = False

    def __init__(self, *args: object, retryable: bool | None = None) -> None:
        super().__init__(*args)
        if retryable is not None:
            self.retryable = retryable


class ConfigError(PaperzooError):
    """A bad configuration key, type or value; raised before anything is launched."""


class DataError(PaperzooError):
    """A dataset that is missing, incomplete or corrupt; names the file and the command that fixes it."""


class RunError(PaperzooError):
    """A run that cannot start or continue (a bad run directory to resume, a diverged loss)."""


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def is_retryable(err: BaseException) -> bool:
    """Whether retrying can help: a PaperzooError says so itself; anything else (an OSError, a network error, a
    crash we did not foresee) gets the benefit of the doubt, except a programming error such as a TypeError."""
    if isinstance(err, PaperzooError):
        return err.retryable
    return not isinstance(err, (TypeError, AttributeError, NameError, KeyError, ValueError, AssertionError))


class Preempted(PaperzooError):
    """Raised by a component after it checkpointed because ctx.should_stop() said the job is going away."""
