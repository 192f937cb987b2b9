"""The error every image reader raises: it names the file (or request) and what to do."""

from __future__ import annotations

from adinspect.errors import InputError


class ImageReadError(InputError):
    """An image or mask could not be read; the message names the file and what to do."""
