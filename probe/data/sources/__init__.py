"""Readers that turn task data files (and, online, HF datasets) into records."""
