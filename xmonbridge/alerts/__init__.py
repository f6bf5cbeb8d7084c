"""Alerts from the monitor: intake (validation, dedupe, correlation, what each asks for)."""
