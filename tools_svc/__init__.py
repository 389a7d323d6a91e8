"""tools_svc: tool registry and sandboxed execution (code, calculator, search, HTTP, planner)."""
