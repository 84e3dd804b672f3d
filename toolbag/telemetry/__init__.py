"""What the fleet tells SREs: Prometheus metrics and structured logs."""
