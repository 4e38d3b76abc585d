"""The one error of a bad config value, raised by whichever part owns the key (a schedule, a proxy, a config
section, a dataset, a model, a task). Free of torch, so the command line can catch it without paying for it."""
from __future__ import annotations


class ConfigValueError(ValueError):
    """A bad value of a config key; the message starts with the key (`alpha.end must be in [0, 1], got 2`).
    A message starting with `=` names a choice of the group (`tangent=oracle needs ...`). The command line shows
    it as one line, `config key 'alpha.end': must be in [0, 1], got 2`."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}{'' if message.startswith('=') else ' '}{message}")
        self.key, self.message = key, message

    def __reduce__(self) -> tuple:
        # picklable with both arguments (a submitit job hands its exception back to the launcher)
        return type(self), (self.key, self.message)
