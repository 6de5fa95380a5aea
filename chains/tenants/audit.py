"""The audit trail: a log line per change of stored state, with the tenant and the key (never a secret)."""

from __future__ import annotations

import logging

from chains.tenants.caller import DEFAULT_TENANT, Caller

log = logging.getLogger("hfchain.audit")


def audit(action: str, caller: Caller | None, tenant: str | None = None, **fields: object) -> None:
    """Log `action` (e.g. session.deleted) by `caller` in `tenant` (the caller's own by default)."""
    who = caller.name if caller is not None else "-"
    where = tenant or (caller.tenant if caller is not None else DEFAULT_TENANT)
    details = " ".join(f"{k}={v!r}" for k, v in fields.items())
    log.info("audit %s tenant=%r key=%r %s", action, where, who, details)
