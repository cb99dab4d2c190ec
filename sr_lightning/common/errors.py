"""The errors a user fixes: a bad value, a missing file or weights, bad data.

Their message names the key or file and says what to do. Every layer raises them; the
console scripts (:func:`sr_lightning.runtime.errors.run_cli`) print them as one block and
exit with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user fixes (bad value, missing file, missing weights, bad data).

    The message names the key or file and says what to do.
    """


class ConfigError(UserError, ValueError):
    """A config value that cannot work; the message names the key (``data.batch_size=0``)."""
