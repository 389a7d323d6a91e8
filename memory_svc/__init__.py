"""memory_svc.

Redis-backed conversation history, context assembly, user state, long-term memory, feedback.
"""
