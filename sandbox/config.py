"""Sandbox settings: data size and seed, token lifetimes, rate limit, faults, lag."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from sagesql.errors import ConfigurationError


@dataclass
class Faults:
    """Faults injected into a share of requests (0.0 to 1.0 each); all off by default."""

    latency_ms: float = 0.0
    errors: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    throttle: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> Faults:
        """``latency=50,errors=0.1,throttle=0.05,drop=0.01,truncate=0.01,seed=3``."""
        faults = cls()
        problems: list[str] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            name = name.strip().lower().replace("-", "_")
            attr = {"latency": "latency_ms", "statuses": "error_statuses"}.get(name, name)
            try:
                if attr == "error_statuses":
                    statuses = tuple(int(s) for s in value.split("/"))
                    if not all(400 <= s <= 599 for s in statuses):
                        raise ValueError
                    faults.error_statuses = statuses
                elif attr == "seed":
                    faults.seed = int(value)
                elif attr in {"latency_ms", "errors", "throttle", "drop", "truncate"}:
                    number = float(value)
                    if not math.isfinite(number) or number < 0:
                        raise ValueError
                    if attr != "latency_ms" and number > 1.0:
                        raise ValueError
                    setattr(faults, attr, number)
                else:
                    problems.append(f"unknown fault {name!r}")
            except ValueError:
                problems.append(f"bad value {value!r} for {name}")
        # One draw picks at most one fault, so the shares cannot add up to more than all.
        if faults.errors + faults.throttle + faults.drop + faults.truncate > 1.0 + 1e-9:
            problems.append(
                "the shares of errors, throttle, drop and truncate add up to more than 1"
            )
        if problems:
            raise ConfigurationError(
                "bad --faults: " + "; ".join(problems),
                hint="use latency=MS,errors=SHARE,statuses=500/503,throttle=SHARE,drop=SHARE,"
                "truncate=SHARE,seed=N with shares from 0 to 1 and statuses from 400 to 599",
            )
        return faults

    @property
    def active(self) -> bool:
        return any((self.latency_ms, self.errors, self.throttle, self.drop, self.truncate))


@dataclass
class SandboxConfig:
    """How one product's emulator behaves."""

    product: str = "sage_accounting"
    seed: int = 1
    # Rows of the main tables (contacts, customers, companies...): small by default so
    # that the sandbox starts at once; raised for benchmarks.
    rows: int = 50
    db: Path | None = None
    access_token_lifetime: int = 300
    refresh_token_lifetime: int = 31 * 24 * 3600
    rate_limit_per_minute: int = 200
    faults: Faults = field(default_factory=Faults)
    # Records updated less than this many seconds ago are not yet visible to lists
    # (index lag, as seen on real APIs); exercises pollers' lookback.
    visibility_lag: float = 0.0
    # OAuth clients the sandbox accepts: client id -> secret.
    clients: dict[str, str] = field(default_factory=lambda: {"sandbox-client": "sandbox-secret"})
    # CRM basic-auth users: user -> password.
    crm_users: dict[str, str] = field(default_factory=lambda: {"admin": "sandbox"})
    # CRM writes its dates in the server's local time; minutes east of UTC.
    crm_utc_offset_minutes: int = 0
    # CRM where=: "documented" (strict: only what Sage documents, sandbox/sdata.py; the
    # rest is a 400) or "extended" (also ne lt le, not, @date@ literals).
    crm_filter_operators: str = "documented"


def serve_config(
    *,
    every_product: bool = False,
    port: int = 0,
    rows: int | None = None,
    token_lifetime: int | None = None,
    rate_limit: int | None = None,
    faults: str = "",
) -> SandboxConfig:
    """The base SandboxConfig of ``sagesql sandbox serve``'s options, checked.

    Every bad option is named in one ConfigurationError (all three products take
    ``port`` to ``port + 2``); ``rows`` is only checked here, since a ``--db`` file may
    supply it (see serve.start_sandboxes).
    """
    problems = []
    highest = 65535 - 2 if every_product else 65535
    if not 0 <= port <= highest:
        problems.append(f"--port {port} is out of range (0 to {highest})")
    if rows is not None and rows < 1:
        problems.append(f"--rows {rows} must be at least 1")
    if token_lifetime is not None and token_lifetime < 1:
        problems.append(f"--token-lifetime {token_lifetime} must be at least 1 second")
    if rate_limit is not None and rate_limit < 0:
        problems.append(f"--rate-limit {rate_limit} must be 0 (off) or more")
    if problems:
        raise ConfigurationError("; ".join(problems))
    config = SandboxConfig(faults=Faults.parse(faults))
    if token_lifetime is not None:
        config.access_token_lifetime = token_lifetime
    if rate_limit is not None:
        config.rate_limit_per_minute = rate_limit
    return config
