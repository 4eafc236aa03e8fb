"""Operator and documentation tools of the notify service."""
