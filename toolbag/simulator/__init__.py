"""Wire-faithful vendor simulator (Anthropic, OpenAI, Gemini) with fault injection.

Public API: :func:`toolbag.simulator.app.create_app`, :class:`toolbag.simulator.faults.FaultPlan`,
:class:`toolbag.simulator.server.SimulatorServer`, :func:`toolbag.simulator.server.serve_forever`.

Modules: ``server`` runs ``app`` (routes, fault choice) over ``state`` (plans, request log); ``call`` keeps one
request's log entry; ``playback`` sends answers that need the connection (``connection``), ``raw_response``
those that don't; ``faults`` parses fault plans; ``generate`` decides the reply; ``*_wire`` render it per
vendor (``wire`` is their common interface, ``request`` the neutral request they parse into). ``batch_routes``
serves the vendors' batch APIs (``*_batches``, ``gemini_files``) over ``batches``, which answers each item
with the same engine.
"""
