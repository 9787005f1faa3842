"""The one error base of the plugin: every error it raises on purpose is an :class:`Rdna1Error`.

The CLI catches this base (and nothing narrower) and prints the message as one line: a message
says what is wrong and what to do about it, so it is written for a user, not a developer. It
subclasses ``ValueError`` because nearly every such error is bad input (an option, a file, a
dataset), and so that code that caught ``ValueError`` before keeps working.
"""

from __future__ import annotations


class Rdna1Error(ValueError):
    """An error with a message meant for the user: what is wrong and how to fix it."""

    #: The CLI's exit code: 2 for input the user must change (nearly all), 1 for work that failed.
    exit_code = 2
