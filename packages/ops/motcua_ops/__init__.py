"""The motcua operator CLI (``motcua``): one entry point for the SRE's everyday work."""
