"""A whole fleet on one machine: ``toolbag dev``, and the harness tests and benchmarks start fleets with."""
