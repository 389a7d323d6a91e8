"""reasoning_svc: CoT, self-consistency, Tree-of-Thoughts, ReAct / agent loop, program-aided."""
