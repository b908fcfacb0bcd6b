"""Deterministic workflow code only: no I/O, clock or randomness (see README, "Rules")."""
