"""Preference tuning of the core model on users' feedback (KTO/DPO), into new model versions."""
