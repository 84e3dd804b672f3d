"""Vendor adapters behind one normalized interface.

- ``base``: the normalized request, response and outcome types, and the ``Adapter`` protocol;
- ``adapter``: the skeleton of one attempt, shared by every vendor (``VendorAdapter``);
- ``anthropic_provider``, ``openai_provider`` (also OpenAI-compatible servers), ``gemini_provider``: what
  differs per vendor (wire request, plain send, stream consumption, reading the answer);
- ``clock``: the attempt's clock (timeouts, time to first token) and HTTP pool sizing;
- ``shards``: an adapter's async SDK clients, in connection pools small enough to stay cheap;
- ``errors``: vendor exceptions → outcomes; ``stop_reasons``: refusal and finish signals in 200 answers;
- ``headers``: rate-limit and retry-after headers; ``reasons``: failure wording and secret redaction;
- ``structured``: JSON Schema per vendor, and parsing structured answers;
- ``registry``: from ``toolbag.yaml`` to a ready adapter.
"""
