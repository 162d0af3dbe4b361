"""Running LLM jobs: now, on request, or on a background thread per tenant.

One ``Jobs`` belongs to a ``Memory`` and is shared by its tenant views; closing it stops
every worker thread it started and waits for them. A tenant's worker ends once the tenant
has no pending or running job, and its next background add starts one again; jobs left by
an earlier process are taken up by ``run_jobs`` (the server's ``JobRunner`` calls it).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from ..embed.base import Embedder
from ..llm.base import LLM
from ..read.search import Pool
from ..store.base import Store
from ..timeutil import utcnow
from ..types import Job, MemoryRecord
from .infer import Inference

JOB_LEASE = timedelta(minutes=10)
"""A running job untouched this long is taken to have lost its worker and runs again."""
WAITING = ["pending", "running"]
WORKER_BATCH = 10
IDLE_SECONDS = 0.1


class Jobs:
    """The jobs of one store, run with one embedder and LLM."""

    def __init__(self, store: Store, embedder: Embedder, llm: LLM | None,
                 pool: Pool | None = None) -> None:
        self.store = store
        self._inference = None if llm is None else Inference(store, embedder, llm, pool)
        self._stopping = threading.Event()
        self._workers: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def run(self, tenant: str, limit: int) -> list[Job]:
        """Run the tenant's pending jobs (and jobs whose worker stopped); return them as
        finished."""
        stale = utcnow() - JOB_LEASE
        waiting = self.store.find_jobs(tenant, statuses=WAITING, limit=limit)
        ran = [self.run_one(tenant, j.id) for j in waiting
               if j.status == "pending" or j.updated_at < stale]
        return [j for j in ran if j is not None]

    def run_one(self, tenant: str, job_id: str) -> Job | None:
        """Run one job, unless another runner holds it; return it as finished."""
        assert self._inference is not None
        now = utcnow()
        job = self.store.claim_job(tenant, job_id, now, now - JOB_LEASE)
        return None if job is None else self._inference.run(job)

    def after_add(self, tenant: str, job: Job | None, background: bool) -> list[MemoryRecord]:
        """Run the job an add queued (if any) now, and return the memories it added or
        changed; or leave it to the tenant's background worker, and return nothing."""
        if job is None:
            return []
        if background:
            self.start_worker(tenant)
            return []
        done = self.run_one(tenant, job.id)
        changed = [a["memory_id"] for a in (done.actions if done else ())
                   if a["action"] != "NOOP"]
        return self.store.get(tenant, changed)

    def wait(self, tenant: str, timeout: float) -> bool:
        """Block until no job of the tenant is pending or running; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.store.find_jobs(tenant, statuses=WAITING, limit=1):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def start_worker(self, tenant: str) -> None:
        """Run the tenant's jobs on a background thread (one per tenant) until none is left
        or ``close``."""
        with self._lock:
            worker = self._workers.get(tenant)
            if worker is not None and worker.is_alive():
                return
            worker = threading.Thread(target=self._work, args=(tenant,), name="memlane-jobs",
                                      daemon=True)
            self._workers[tenant] = worker
            worker.start()

    def _work(self, tenant: str) -> None:
        while not self._stopping.is_set():
            if self.run(tenant, WORKER_BATCH):
                continue
            if self._retire(tenant):
                return
            self._stopping.wait(IDLE_SECONDS)  # another runner holds a job: look again

    def _retire(self, tenant: str) -> bool:
        """Leave the tenant if it has no job waiting. Decided under the lock ``start_worker``
        takes, after an add committed its job: either this look sees that job, or the add's
        ``start_worker`` finds no worker and starts one."""
        with self._lock:
            if self.store.find_jobs(tenant, statuses=WAITING, limit=1):
                return False
            del self._workers[tenant]
            return True

    def close(self) -> None:
        """Stop every worker and wait for the job each is running."""
        self._stopping.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.join()
