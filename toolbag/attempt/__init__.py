"""One attempt of one job on one model: its context and seams, the request it sends, its lease, its runner."""
