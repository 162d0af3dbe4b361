"""What the server holds while it runs: the one ``Memory``, its tenant views, the keys'
rate limits, and who each request is."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..auth import Principal, authenticate
from ..memory import Memory
from .limits import RateLimiter
from .settings import Settings


@dataclass(frozen=True, slots=True)
class Caller:
    """A request's principal and the memory as its tenant sees it."""

    principal: Principal
    memory: Memory


class ServerState:
    def __init__(self, settings: Settings, memory: Memory) -> None:
        self.settings, self.memory = settings, memory
        self.limiter = RateLimiter(settings.rate, settings.burst)
        self._views: dict[str, Memory] = {}
        self._lock = threading.Lock()

    def view(self, tenant: str) -> Memory:
        """One view per tenant, kept: a view runs its tenant's background jobs in one
        worker thread, so views made per request would start a thread each."""
        with self._lock:
            if tenant not in self._views:
                self._views[tenant] = self.memory.for_tenant(tenant)
            return self._views[tenant]

    def caller(self, token: str | None) -> Caller:
        if self.settings.auth:
            principal = authenticate(self.memory.store, token)
        else:
            principal = Principal(self.settings.tenant, admin=True)
        self.limiter.take(principal.key_id or "")
        return Caller(principal, self.view(principal.tenant))
