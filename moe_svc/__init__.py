"""moe_svc: the core LLM: Mixture-of-Experts transformer, generation engine, OpenAI-compatible."""
