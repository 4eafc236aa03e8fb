"""motcua dossier service: intake and processing of administrative-procedure dossiers."""
