"""``toolbag dev`` serves the HTTP front door and prints a key that works."""

from __future__ import annotations

from pathlib import Path

import openai

from tests.test_dev import dev_env, stop, toolbag_dev, wait_for


def test_dev_starts_the_api_and_prints_a_working_key(tmp_path: Path) -> None:
    with toolbag_dev(tmp_path, dev_env(), "--no-demo") as (proc, out):
        found = wait_for(out, proc, r"api (http://127\.0\.0\.1:\d+) key \(caller dev\): (tbk-\S+)")
        wait_for(out, proc, "fleet running")
        client = openai.OpenAI(base_url=f"{found.group(1)}/v1", api_key=found.group(2), max_retries=0)
        answer = client.chat.completions.create(model="summarize", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content
        stop(proc, out)
