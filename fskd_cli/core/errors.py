"""The one exception type for user mistakes.

Stage code raises :class:`FskdError` for anything the user can fix (a missing file, a wrong
option, a checkpoint of the wrong kind). The CLI prints its message as one line and exits
non-zero; every other exception is a bug and keeps its traceback.
"""


class FskdError(Exception):
    """A user-facing error: the message names the file or option and what is wrong."""
