"""The dossier domain: rules and reference data as plain Python; imports no adapter."""
