"""The simulator counts the vendor calls it is answering (``GET /_sim/calls``): what benchmarks read as "open
at the vendor", instead of anything the fleet says about itself."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai

from toolbag.simulator.server import SimulatorServer

CALLS = 12


def test_open_calls_are_counted_while_answered_and_the_peak_kept() -> None:
    with SimulatorServer() as sim:
        control = httpx2.Client(base_url=sim.url)
        sdk = openai.OpenAI(api_key="sk-sim", base_url=sim.url + "/v1", max_retries=0)

        def call(i: int) -> str:
            reply = sdk.chat.completions.create(
                model="gpt-t", messages=[{"role": "user", "content": f"call {i}"}],
                extra_headers={"x-sim-latency-ms": "1500"},
            )
            return reply.choices[0].message.content or ""

        assert control.get("/_sim/calls").json() == {"open": 0, "peak": 0}
        with ThreadPoolExecutor(CALLS) as pool:
            answers = [pool.submit(call, i) for i in range(CALLS)]
            deadline = time.monotonic() + 10
            while control.get("/_sim/calls").json()["open"] < CALLS:
                assert time.monotonic() < deadline, control.get("/_sim/calls").json()
                time.sleep(0.05)
            assert all(a.result() for a in answers)
        assert control.get("/_sim/calls").json() == {"open": 0, "peak": CALLS}  # control requests not counted
        assert control.delete("/_sim/calls").json() == {"open": 0, "peak": 0}
        control.close()
        sdk.close()
