"""Errors a user can act on. Each message is one line that names the key, file or value to fix."""


class PaperzooError(Exception):
    """Base of every error paperzoo reports as a one-line message (the CLI prints it without a traceback)."""


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


class Preempted(PaperzooError):
    """Raised by a component after it checkpointed because ctx.should_stop() said the job is going away."""
