"""Media taps on a real pjsua2 endpoint: every live call with speech recognition or a softphone has one,
and a worker must survive thousands of them coming and going.

pjsua2 2.15 frees an ``AudioMediaPort`` while the conference bridge still holds it (the removal is only
queued for the next clock tick, and the bridge calls every port each 20 ms), so a destroyed tap let the
media thread call into freed memory: workers died with SIGSEGV in libpython now and then. The engine now
keeps taps and reuses them. This runs the engine's own tap life cycle in a separate process (one pjsua2
endpoint per process), churning taps for seconds while another thread keeps the interpreter busy.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHURN = textwrap.dedent(
    """
    import sys, threading, time
    from telephony.pjsua_thread import Engine, EndpointConfig

    class Sink:
        def __init__(self, name):
            self.name, self.frames = name, 0
        def deliver(self, frame):
            self.frames += 1
        def next_outgoing(self):
            return None

    def busy():  # allocation-heavy Python on another thread, as whisper or an import would be
        while True:
            [dict(a=i) for i in range(1000)]

    config = EndpointConfig(transports=("udp",), rtp_port=int(sys.argv[1]), max_calls=4)
    engine = Engine(config, lambda event: None)
    engine.start()
    threading.Thread(target=busy, daemon=True).start()
    taken = 0
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        taps = [engine._take_tap() for _ in range(5)]
        for number, tap in enumerate(taps):
            tap.sink = Sink(number)
        taken += len(taps)
        tick = time.monotonic() + 0.025
        engine.ep.libHandleEvents(25)
        time.sleep(max(0.0, tick - time.monotonic()))  # at most 40 rounds a second, however fast pjsua is
        engine._retire_taps(*taps)
        engine.reap()
    engine.shutdown()
    print(taken, engine.taps_made, flush=True)
    """
)


def test_taps_are_reused_and_a_worker_survives_thousands_of_them() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", CHURN, "27400", "6"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    taken, made = (int(word) for word in done.stdout.split()[-2:])
    assert taken >= 500, done.stdout  # the loop really churned
    # only what waits out the bridge's disconnects (0.5 s of retired taps) plus what is in use is ever made
    assert made <= 5 * (0.5 / 0.025 + 4), (taken, made)
