"""Shared network blocks. No losses, no configs: families compose these."""
