"""The one exception the CLI turns into a one-line message and exit code 2."""


class TracerError(Exception):
    """Bad input or an environment problem the user can fix; the message is one line."""
