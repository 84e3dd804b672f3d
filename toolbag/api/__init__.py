"""The HTTP front door (``toolbag api``): OpenAI- and Anthropic-compatible endpoints, and its API keys."""
