"""gateway.

Public entry: OpenAI-compatible API, API keys, rate limits, response generator, web UI, feedback.
"""
