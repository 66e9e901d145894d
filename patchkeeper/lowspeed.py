"""The low-speed limit on transfers from untrusted peers (registries, git remotes).

git's `http.lowSpeedLimit`/`http.lowSpeedTime` (curl's `--speed-limit`/`--speed-time`):
a transfer whose throughput stays below `limit` bytes/s for `time` seconds is aborted,
so a peer that drip-feeds bytes fails in about `time` seconds instead of at a deadline
of many minutes. `PATCHKEEPER_LOW_SPEED_LIMIT` (bytes/s, default 1000) and
`PATCHKEEPER_LOW_SPEED_TIME` (seconds, default 60) set it for both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from patchkeeper.errors import ConfigError

LIMIT_VARIABLE = "PATCHKEEPER_LOW_SPEED_LIMIT"
TIME_VARIABLE = "PATCHKEEPER_LOW_SPEED_TIME"


def _positive_int(variable: str, default: int) -> int:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) <= 0:
        raise ConfigError(f"{variable}={text!r}: must be a positive whole number")
    return int(text)


@dataclass(frozen=True)
class LowSpeed:
    """Abort when fewer than `limit` bytes/s arrive over `seconds` seconds."""

    limit: int = 1000
    seconds: int = 60

    @classmethod
    def from_env(cls) -> LowSpeed:
        return cls(
            _positive_int(LIMIT_VARIABLE, cls.limit), _positive_int(TIME_VARIABLE, cls.seconds)
        )

    def git_config(self) -> dict[str, str]:
        """The same rule as git configuration, for its HTTP transfers."""
        return {"http.lowSpeedLimit": str(self.limit), "http.lowSpeedTime": str(self.seconds)}

    def pace(self) -> Pace:
        return Pace(self)


@dataclass
class Pace:
    """One transfer's bytes and the time spent waiting for them, in the current window.

    Only time spent waiting on the peer counts: a reader that pauses is not the peer's fault.
    """

    rule: LowSpeed
    seen: int = 0
    waited: float = 0.0

    def too_slow(self, received: int, waited: float) -> bool:
        """Count one read; True once a whole window of waiting went by below the limit."""
        self.seen += received
        self.waited += waited
        if self.waited < self.rule.seconds:
            return False
        slow = self.seen < self.rule.limit * self.waited
        self.seen, self.waited = 0, 0.0
        return slow

    def reason(self) -> str:
        return (
            f"less than {self.rule.limit} bytes/s for {self.rule.seconds} s "
            f"({LIMIT_VARIABLE} / {TIME_VARIABLE})"
        )
