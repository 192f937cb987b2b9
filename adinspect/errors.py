"""The one base class of errors caused by what a user gave us (files, fields, requests).

The CLI prints these as one line and exits 2; anything else is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input: the message names the file or field and says what to do."""
