"""Background LLM jobs, run by the server for every tenant.

An ``add(infer="background")`` leaves a durable job in the store. The tenant's view that
took the add starts working on it at once; this runner also looks, every ``interval``
seconds, for jobs of any tenant that nobody is working on (left by an earlier process, or
by a worker that died: ``Memory.run_jobs`` takes those back after their lease).
"""

from __future__ import annotations

import logging
import threading

from ..errors import MemlaneError
from ..memory import Memory
from ..write.jobs import WAITING

log = logging.getLogger("memlane.server")


class JobRunner:
    def __init__(self, memory: Memory, interval: float) -> None:
        self.memory, self.interval = memory, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memlane-server-jobs",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def run_once(self) -> int:
        """Run what waits in every tenant; how many jobs ran."""
        ran = 0
        for tenant in self.memory.store.job_tenants(WAITING):
            if self._stop.is_set():
                break
            ran += len(self.memory.for_tenant(tenant).run_jobs(limit=10))
        return ran

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except MemlaneError as exc:  # the store or the LLM failed: try again later
                log.warning("background jobs: %s", exc)
