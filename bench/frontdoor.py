"""The HTTP front door: streamed through ``toolbag api`` and the fleet vs the bare OpenAI SDK to the same simulator.

    .venv/bin/python -m bench.frontdoor [--requests 200] [--streams 1000] [--worker-slots 250]

Prints, in one run:

- added time to first token and added total latency (p50/p99) of a streamed chat completion through the
  front door (``toolbag api`` in its own process, an openai worker, a supervisor) over the same streamed call
  made directly to the simulator, interleaved so both see the same background load;
- streams held open at once by the one front-door process when ``--streams`` callers stream at the same time
  at 1 s vendor latency (the peak of ``toolbag_api_open_streams``), and how many ended complete;
- Redis commands per streamed job, fleet-wide (``total_commands_processed``), against the same jobs submitted
  with ``Client`` and waited for whole (the fleet without the front door or streaming).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import urllib.request
from typing import Any

import httpx2 as httpx
import openai
import redis

from bench._common import bench_config, fleet, ground, percentile, summary_ms
from toolbag.api.keys import KeyStore
from toolbag.attempt.deltas import TextDelta
from toolbag.client import Client
from toolbag.devfleet.harness import free_port, wait_http

STREAM_LATENCY: dict[str, float] = {"ttft_ms": 20, "tokens_per_s": 400}
HELD_LATENCY: dict[str, float] = {"ttft_ms": 1000, "tokens_per_s": 400}  # 1 s before the vendor's first token


def set_latency(sim_url: str, latency: dict[str, float]) -> None:
    body = json.dumps({"latency": {"gpt-*": latency}}).encode()
    request = urllib.request.Request(f"{sim_url}/_sim/faults", data=body, method="POST",
                                     headers={"content-type": "application/json"})
    urllib.request.urlopen(request).close()


def timed_stream(client: openai.OpenAI, model: str, text: str) -> tuple[float, float, str]:
    """(time to first text, total time, text) of one streamed chat completion."""
    t0 = time.perf_counter()
    first = 0.0
    parts = []
    for chunk in client.chat.completions.create(model=model, stream=True, max_completion_tokens=256, messages=[
            {"role": "system", "content": "Task: bench."}, {"role": "user", "content": text}]):
        for choice in chunk.choices:
            if choice.delta.content:
                first = first or time.perf_counter() - t0
                parts.append(choice.delta.content)
    return first, time.perf_counter() - t0, "".join(parts)


def client_stream_ttft(client: Client, text: str) -> float:
    """Time to the first text of a job streamed with ``job.stream()``: the fleet's share, without HTTP."""
    t0 = time.perf_counter()
    job = client.submit("bench", input={"messages": [{"role": "user", "content": text}], "system": "Task: bench."},
                        tier="interactive")
    for event in job.stream(timeout_s=30):
        if isinstance(event, TextDelta) and event.text:
            first = time.perf_counter() - t0
            job.result(30)
            return first
    raise AssertionError("no text streamed")


def open_streams(api_url: str) -> float:
    with urllib.request.urlopen(f"{api_url}/metrics") as response:
        for line in response.read().decode().splitlines():
            if line.startswith("toolbag_api_open_streams "):
                return float(line.split()[1])
    return 0.0


async def many_streams(api_url: str, key: str, count: int) -> tuple[int, int, float]:
    """``count`` streams at once through the front door; (complete, failed, seconds until the last one's
    response headers arrived)."""
    t0 = time.perf_counter()
    opened: list[float] = []
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(base_url=api_url, limits=limits, timeout=300,
                                 headers={"authorization": f"Bearer {key}"}) as http:
        async def one(i: int) -> bool:
            body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": f"held {i}"}]}
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                opened.append(time.perf_counter() - t0)
                lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
            return response.status_code == 200 and lines[-1] == "data: [DONE]"

        outcomes = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    complete = sum(1 for outcome in outcomes if outcome is True)
    return complete, count - complete, max(opened, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--worker-slots", type=int, default=250)
    args = parser.parse_args()
    with ground("frontdoor") as (tmp, server, sim):
        set_latency(sim.url, STREAM_LATENCY)
        direct = openai.OpenAI(api_key="sk-bench", base_url=f"{sim.url}/v1", max_retries=0, timeout=60)
        config_path = bench_config(sim.url, tmp, stream=True)
        with fleet(server.url, config_path, [("openai", args.worker_slots)]) as procs:
            store = procs.client.store
            _, key = KeyStore(store.redis, store.keys).create("bench", "interactive")
            port = free_port()
            procs.start("api", "api", "--port", str(port))
            api_url = f"http://127.0.0.1:{port}"
            wait_http(f"{api_url}/healthz")
            door = openai.OpenAI(api_key=key, base_url=f"{api_url}/v1", max_retries=0, timeout=60)

            for i in range(20):  # warm both paths
                timed_stream(direct, "gpt-6-luna", f"warm {i}")
                timed_stream(door, "bench", f"warm {i}")
            direct_ttft, direct_total, door_ttft, door_total, client_ttft = [], [], [], [], []
            for i in range(args.requests):
                first, total, _ = timed_stream(direct, "gpt-6-luna", f"hello {i}")
                direct_ttft.append(first)
                direct_total.append(total)
                client_ttft.append(client_stream_ttft(procs.client, f"hello {i}"))
                first, total, text = timed_stream(door, "bench", f"hello {i}")
                assert text, "the front door streamed no text"
                door_ttft.append(first)
                door_total.append(total)
            print(f"streamed, {args.requests} requests each way (simulator: {STREAM_LATENCY})")
            print(f"  TTFT   direct SDK  {summary_ms(direct_ttft)}")
            print(f"  TTFT   Client.submit + job.stream(), no front door  {summary_ms(client_ttft)}")
            print(f"  TTFT   front door  {summary_ms(door_ttft)}")
            print(f"  total  direct SDK  {summary_ms(direct_total)}")
            print(f"  total  front door  {summary_ms(door_total)}")
            for name, base, through in (("TTFT", direct_ttft, door_ttft), ("total", direct_total, door_total)):
                print(f"  added {name}: p50 {(percentile(through, .5) - percentile(base, .5)) * 1000:.2f} ms, "
                      f"p99 {(percentile(through, .99) - percentile(base, .99)) * 1000:.2f} ms")

            commands = redis.Redis.from_url(server.url)

            def total_commands() -> int:
                return int(commands.info("stats")["total_commands_processed"])

            jobs = 50
            before = total_commands()
            for i in range(jobs):
                timed_stream(door, "bench", f"counted {i}")
            streamed_per_job = (total_commands() - before) / jobs
            before = total_commands()
            for i in range(jobs):
                assert procs.client.submit("bench", input={"text": f"plain {i}"}, tier="interactive").result(30).ok
            plain_per_job = (total_commands() - before) / jobs
            print(f"Redis commands per job, fleet-wide (incl. heartbeats): streamed through the front door "
                  f"{streamed_per_job:.1f}, Client.submit + result without streaming {plain_per_job:.1f} "
                  f"(ratio {streamed_per_job / plain_per_job:.2f})")

            set_latency(sim.url, HELD_LATENCY)
            peak = [0.0]
            done = threading.Event()

            def watch() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], open_streams(api_url))
                    time.sleep(0.1)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            t0 = time.perf_counter()
            complete, failed, all_open_s = asyncio.run(many_streams(api_url, key, args.streams))
            elapsed = time.perf_counter() - t0
            done.set()
            watcher.join()
            print(f"{args.streams} concurrent streams at 1 s vendor latency, one front-door process, "
                  f"{args.worker_slots} worker slots: peak open {peak[0]:.0f}, complete {complete}, failed {failed}; "
                  f"all {args.streams} had their headers after {all_open_s:.1f} s, all done after {elapsed:.1f} s")
            tail: Any = procs.log("api", 2000)
            if failed:
                print(f"api log tail:\n{tail}")


if __name__ == "__main__":
    main()
