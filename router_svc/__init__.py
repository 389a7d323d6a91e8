"""router_svc: intent classifier; plans and fans out to the services below it."""
