"""Wire-faithful vendor simulator (Anthropic, OpenAI, Gemini) with fault injection.

Public API: :func:`toolbag.simulator.app.create_app`, :class:`toolbag.simulator.faults.FaultPlan`,
:class:`toolbag.simulator.server.SimulatorServer`, :func:`toolbag.simulator.server.serve_forever`.
"""
