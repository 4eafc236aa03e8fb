"""Developer commands of the dossier service (run with python -m)."""
