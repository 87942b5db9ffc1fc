"""The embedded MongoDB server process (SecantusDB), as ``python -m core.mongod``.

A thin launcher instead of the ``secantusd-py`` script so the process (a) stops cleanly on SIGTERM/SIGINT,
(b) stops by itself when the process that started it is gone, and (c) never takes longer than
``STOP_DEADLINE`` to exit: a hung shutdown must not leave an orphan holding the data directory and port.
WiredTiger is journaled, so the rare forced exit costs only a recovery at the next start.

It also teaches the server one planning rule MongoDB has and SecantusDB 0.7.0b3 lacks
(``point_lookup_guards``): a filter naming ``_id`` by equality *and* other fields — every guarded update
the platform makes, e.g. ``{"_id": agent, "presence": "available", "offer": None}`` — is a primary-key
point lookup. Without it the server walked a secondary index on the other fields (all available agents, all
ended contacts: work that grew with the collection), which profiling the desktop benchmark showed as the
server's main cost. findAndModify by ``_id`` had the same problem in its write step (a scan of the whole
collection: 60 ms a call at 10,000 documents, 0.7 ms with the rule; ``tests/test_mongod.py`` checks that
it still answers what MongoDB would).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

STOP_DEADLINE = 15.0
PATCHED_SECANTUS = "0.7.0b3"
# Top-level operators that only narrow what the rest of the filter matches. findAndModify writes with
# ``{"_id": <found>, "$and": [<query>]}``; without ``$and`` here that write scanned the collection (60 ms a
# call at 10,000 documents, measured), though the find before it had used the ``_id`` index.
_CONJUNCTS = frozenset({"$and", "$or", "$nor", "$expr", "$comment"})


def point_lookup_guards() -> bool:
    """Plan ``{_id: <point>, …more fields}`` as an ``_id`` lookup; the server's ``matches()`` pass, which
    every caller of the planner applies to its candidates, checks the other fields. Only for the SecantusDB
    version this was read against (returns whether it applied)."""
    import importlib.metadata

    from secantus import storage

    if importlib.metadata.version("secantusdb") != PATCHED_SECANTUS:
        return False
    plan = storage.Storage._try_index_id_keys
    if getattr(plan, "huiliu_point_lookup", False):
        return True

    def plan_with_point_lookup(
        self: storage.Storage, db: str, coll: str, filter: dict[str, Any], *, collation: Any = None
    ) -> list[bytes] | None:
        if (
            filter
            and len(filter) > 1
            and "_id" in filter
            and all(not field.startswith("$") or field in _CONJUNCTS for field in filter)
            and storage._id_point_lookup_keys(filter["_id"]) is not None
            and not self._is_timeseries(db, coll)
        ):
            narrowed: list[bytes] | None = plan(self, db, coll, {"_id": filter["_id"]}, collation=collation)
            if narrowed is not None:
                return narrowed
        result: list[bytes] | None = plan(self, db, coll, filter, collation=collation)
        return result

    plan_with_point_lookup.huiliu_point_lookup = True  # type: ignore[attr-defined]
    storage.Storage._try_index_id_keys = plan_with_point_lookup
    return True


# Commands that only read or write documents and return: they may wait at the gate. Anything that can
# block inside the server on purpose (getMore on a tailable cursor or change stream, hello, transactions)
# never does.
GATED_COMMANDS = frozenset(
    {"find", "insert", "update", "delete", "findAndModify", "findandmodify", "count", "distinct", "aggregate"}
)


def dispatch_gate(concurrency: int) -> None:
    """At most ``concurrency`` plain commands inside the server at once, the rest waiting their turn in
    arrival order. SecantusDB serialises its storage on one lock; with a connection thread per client
    (hundreds with a 70-worker telephony pool), every command thread that has read its request fights
    for that lock and for the GIL, and the lock holder waits for the GIL behind them: under load a
    ``find_one`` by ``_id`` took seconds. Waiting at the gate costs no GIL."""
    from secantus import server

    if getattr(server.dispatch, "huiliu_gate", None) is not None:
        return
    dispatch = server.dispatch
    gate = threading.BoundedSemaphore(concurrency)

    def gated(body: dict[str, Any], ctx: Any) -> Any:
        name = next(iter(body), "")
        if name not in GATED_COMMANDS or _may_block(name, body):
            return dispatch(body, ctx)
        with gate:
            return dispatch(body, ctx)

    gated.huiliu_gate = gate  # type: ignore[attr-defined]
    server.dispatch = gated


def _may_block(name: str, body: dict[str, Any]) -> bool:
    if "autocommit" in body:  # a statement of a transaction waits for the transaction's other statements
        return True
    if name == "find":
        return bool(body.get("tailable") or body.get("awaitData"))
    if name == "aggregate":
        pipeline = body.get("pipeline") or []
        return any(isinstance(stage, dict) and "$changeStream" in stage for stage in pipeline)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.mongod")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage-path", required=True)
    parser.add_argument("--cache-size", default="256M")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(os.environ.get("HUILIU_MONGOD_CONCURRENCY", "2")),
        help="plain commands run inside the server at once (0: no limit)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from secantus.server import SecantusDBServer

    point_lookup_guards()
    if args.concurrency > 0:
        dispatch_gate(args.concurrency)

    server = SecantusDBServer(
        host=args.host,
        port=args.port,
        storage_path=os.path.abspath(args.storage_path),
        enable_test_commands=False,
        cache_size=args.cache_size,
    )
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    parent = os.getppid()
    server.start()
    while not stop.wait(0.5):
        if os.getppid() != parent:  # orphaned: the supervisor died without stopping us
            break
    stopper = threading.Thread(target=server.stop, name="secantus-stop", daemon=True)
    stopper.start()
    stopper.join(STOP_DEADLINE)
    if stopper.is_alive():
        print(f"embedded MongoDB did not stop within {STOP_DEADLINE:.0f} s; exiting anyway", file=sys.stderr)
        os._exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
