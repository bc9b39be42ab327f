"""The error type behind every user-facing problem (bad config, file, option)."""


class SimFishError(Exception):
    """Bad input from the user: the message names what is wrong and where.

    The command-line tool prints it as one line and exits non-zero.
    """
