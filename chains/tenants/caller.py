"""Who is calling: a key's name, its tenant, its scope and its quotas; read from a run's config."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from chains.errors import Forbidden, InvalidInput

DEFAULT_TENANT = "default"  # everything stored when no keys are configured, and the env keys' tenant
CALLER_KEY = "hfchain_caller"  # config["configurable"][CALLER_KEY]: set by the server, never by a client
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NAME_HELP = "1-64 characters: letters, digits and . _ - (starting with a letter or digit)"

Scope = Literal["inference", "user", "admin"]
SCOPES: tuple[Scope, ...] = ("inference", "user", "admin")  # each allows what the ones before it do
SCOPE_HELP = {
    "inference": "the model routes (its tenant's classifiers by name too), without sessions or trainings",
    "user": "the model routes and its tenant's stored things (sessions, classifiers, trainings)",
    "admin": "everything: every tenant's data, keys and usage",
}


@dataclass(frozen=True)
class Caller:
    """An authenticated key: `name` (never the secret), the `tenant` it acts for, its scope and limits."""

    name: str
    tenant: str = DEFAULT_TENANT
    scope: Scope = "admin"
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    source: Literal["env", "database"] = "database"

    def allows(self, scope: Scope) -> bool:
        """Whether this key's scope includes `scope`."""
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def require(self, scope: Scope, what: str) -> None:
        """403 naming the scope `what` needs, unless this key has it."""
        if not self.allows(scope):
            raise self.refusal(scope, what)

    def refusal(self, scope: Scope, what: str) -> Forbidden:
        """The 403 for `what`, which needs `scope`."""
        return Forbidden(
            f"{what} needs a key with scope {scope!r} ({SCOPE_HELP[scope]}); this key ({self.name!r}) "
            f"has scope {self.scope!r}: ask an admin for a key with scope {scope!r}",
            required_scope=scope,
        )

    def acting_for(self, tenant: str) -> Caller:
        """An admin's caller acting in another tenant (X-Hfchain-Tenant)."""
        return Caller(self.name, check_name(tenant, "tenant"), self.scope, None, None, self.source)

    def public(self) -> dict[str, Any]:
        """What a response may show of the key."""
        return {"name": self.name, "tenant": self.tenant, "scope": self.scope}


def check_name(name: object, what: str = "key name") -> str:
    """`name` if it can name a key or tenant (422 otherwise)."""
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise InvalidInput(f"{what} {name!r}: {NAME_HELP}")
    return name


def caller_of(config: dict | None) -> Caller | None:
    """The caller a run is for (None: a Python caller or a service without keys)."""
    caller = ((config or {}).get("configurable") or {}).get(CALLER_KEY)
    return caller if isinstance(caller, Caller) else None


def tenant_of(config: dict | None) -> str:
    """The tenant whose stored things a run reads and writes."""
    caller = caller_of(config)
    return caller.tenant if caller is not None else DEFAULT_TENANT


def require(config: dict | None, scope: Scope, what: str) -> None:
    """403 unless the run's caller (if any) has `scope`."""
    caller = caller_of(config)
    if caller is not None:
        caller.require(scope, what)


def with_caller(config: dict, caller: Caller | None) -> dict:
    """`config` with the caller set (request-scoped: what LangServe's per_req_config_modifier returns)."""
    if caller is None:
        return config
    return {**config, "configurable": {**(config.get("configurable") or {}), CALLER_KEY: caller}}
