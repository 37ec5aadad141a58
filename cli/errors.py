"""The one exception `basis` turns into `error: ...` on stderr and exit status 1."""


class CliError(Exception):
    """A failure to report in one line on stderr, exit status 1."""
