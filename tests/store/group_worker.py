"""A separate process in one concurrency group (run by tests/store/test_concurrency.py):
``python group_worker.py DB_URL GROUP HOLDER CANCEL_IN_PROGRESS GATE_FILE`` admits
HOLDER, prints its slot, runs a body that waits for GATE_FILE to exist, and prints how
it ended (``ran``, ``cancelled pending`` or ``cancelled running``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from vmrunner.store.concurrency import ConcurrencyStore, run_in_group
from vmrunner.store.engine import open_store


async def main(url: str, group: str, holder: str, cip: bool, gate: Path) -> str:
    store = ConcurrencyStore(open_store(url))

    async def body() -> str:
        print("started", flush=True)
        while not gate.exists():
            await asyncio.sleep(0.05)
        return "ran"

    outcome = await run_in_group(
        store, group, holder, cip, body, on_pending=lambda: print("pending", flush=True)
    )
    return outcome.value or f"cancelled {outcome.cancelled}"


if __name__ == "__main__":
    url, group, holder, cip, gate = sys.argv[1:6]
    print(asyncio.run(main(url, group, holder, cip == "1", Path(gate))), flush=True)
