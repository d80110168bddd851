"""Durability of the event log under faults: ``python -m bench durability``.

One steady producer (the project's publisher, ``--rate`` events/s) runs while the embedded
broker is killed (SIGKILL) and started again ``--broker-cycles`` times, the stack is stopped
cleanly and started again ``--clean-stops`` times, and the producer is killed (SIGKILL)
``--publisher-kills`` times with the broker up and as many times with it down (a new producer
takes over its local log each time). Then every producer is stopped and the topic is read:
each emitted ``event_id`` is looked up. See ``bench/durability.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import run_stoppable
from bench.durability import Harness


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench durability", description=__doc__)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--broker-cycles", type=int, default=5)
    p.add_argument("--clean-stops", type=int, default=3)
    p.add_argument("--publisher-kills", type=int, default=3)
    p.add_argument("--outage-s", type=float, default=2.0)
    p.add_argument("--steady-s", type=float, default=3.0)
    p.add_argument("--quick", action="store_true", help="one of each, short phases")
    args = p.parse_args(argv)
    if args.quick:
        args.broker_cycles = args.clean_stops = args.publisher_kills = 1
        args.outage_s, args.steady_s = 1.0, 1.0
    with tempfile.TemporaryDirectory(prefix="aftershock-durability-") as tmp:
        h = Harness(
            Path(tmp), rate=args.rate, outage_s=args.outage_s, steady_s=args.steady_s, log=True
        )
        t0 = time.monotonic()
        try:
            h.up()
            h.start_producer()
            for _ in range(args.broker_cycles):
                h.broker_kill_restart()
            for _ in range(args.clean_stops):
                h.clean_stop()
            for _ in range(args.publisher_kills):
                h.publisher_kill(broker_down=False)
            for _ in range(args.publisher_kills):
                h.publisher_kill(broker_down=True)
            h.steady()
            h.stop_all()
            t = h.count()
        finally:
            h.cleanup()
    kills = 2 * args.publisher_kills
    print(f"\n{time.monotonic() - t0:.0f} s, {args.rate:g} events/s, {len(h.producers)} producers")
    print(f"broker kill/restart cycles      {args.broker_cycles}")
    print(f"clean stops (stack down/up)     {args.clean_stops}")
    print(f"publisher kills, broker up/down {args.publisher_kills}/{args.publisher_kills}")
    print(f"emitted                         {t.emitted}")
    print(f"read back (distinct ids)        {t.read}")
    print(f"lost beyond the window          {t.lost_beyond_window}")
    print(
        f"lost within the window          {t.lost_in_window} "
        f"(the last {h.window_ms:g} ms before each of {kills} publisher kills)"
    )
    print(f"losses detected / events resent {t.losses_detected} / {t.resent}")
    print(f"reported unrepaired             {t.unrepaired_reported}")
    print(f"duplicates in the topic (raw)   {t.duplicates_raw}")
    print(f"exported / duplicates in export {t.exported} / {t.exported_duplicates}")
    ok = t.lost_beyond_window == 0 and t.exported_duplicates == 0 and t.exported == t.read
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    run_stoppable(lambda: sys.exit(main(sys.argv[1:])), "the stack and producers")
