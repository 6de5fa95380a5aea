"""Tenants: keys (stored hashed), scopes, ownership, quotas and usage; every store asks it who owns what."""

from chains.tenants.audit import audit
from chains.tenants.caller import (
    CALLER_KEY,
    DEFAULT_TENANT,
    SCOPES,
    Caller,
    caller_of,
    require,
    tenant_of,
    with_caller,
)
from chains.tenants.meter import USAGE_EVENT, Meter, MeterCallback, metering

__all__ = [
    "CALLER_KEY",
    "DEFAULT_TENANT",
    "SCOPES",
    "USAGE_EVENT",
    "Caller",
    "Meter",
    "MeterCallback",
    "audit",
    "caller_of",
    "metering",
    "require",
    "tenant_of",
    "with_caller",
]
