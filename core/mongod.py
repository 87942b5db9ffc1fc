"""The embedded MongoDB server process (SecantusDB), as ``python -m core.mongod``.

A thin launcher instead of the ``secantusd-py`` script so the process (a) stops cleanly on SIGTERM/SIGINT,
(b) stops by itself when the process that started it is gone, and (c) never takes longer than
``STOP_DEADLINE`` to exit: a hung shutdown must not leave an orphan holding the data directory and port.
WiredTiger is journaled, so the rare forced exit costs only a recovery at the next start.
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

STOP_DEADLINE = 15.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.mongod")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage-path", required=True)
    parser.add_argument("--cache-size", default="256M")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from secantus.server import SecantusDBServer

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
