"""The one base class of the errors an operator can act on.

Such an error's message says what went wrong and what to do next. Every front end shows it
as it is: the command line as one plain line, the console as a plain message; no traceback,
and it is not an error report for Sentry.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Something the operator can fix; the message says how."""
