"""Imports every subcommand module so that each registers itself on ``cli``."""
