"""Training support for `python -m moe_svc.train`: tokenizers, token data, schedules."""
