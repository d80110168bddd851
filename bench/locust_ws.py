"""Locust WebSocket user for the side-by-side benchmark (runs in its own venv, under gevent).

Each user holds one WebSocket to the echo server and sends ``{"op":"echo","data":...}`` at
LOCUST_RATE messages/s, waiting for each echo. The number of completed round trips is printed
as ``ROUND_TRIPS <n>`` when Locust quits.
"""

import os
import time

import websocket
from locust import User, between, constant_pacing, events, task

RATE = float(os.environ.get("LOCUST_RATE", "5"))
DONE = [0]


class EchoUser(User):
    wait_time = constant_pacing(1 / RATE) if RATE > 0 else between(0, 0)

    def on_start(self) -> None:
        self.ws = websocket.create_connection(self.host, enable_multithread=False)

    def on_stop(self) -> None:
        self.ws.close()

    @task
    def echo(self) -> None:
        t0 = time.perf_counter()
        payload = '{"op":"echo","data":"' + "x" * 100 + '"}'
        self.ws.send(payload)
        self.ws.recv()
        DONE[0] += 1
        events.request.fire(
            request_type="WS",
            name="echo",
            response_time=(time.perf_counter() - t0) * 1000,
            response_length=len(payload),
            exception=None,
            context={},
        )


@events.quitting.add_listener
def _report(environment, **kw):
    print(f"ROUND_TRIPS {DONE[0]}", flush=True)
