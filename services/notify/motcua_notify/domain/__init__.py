"""The notify domain: delivery states, templates, pacing and planning. Pure Python, no I/O."""
