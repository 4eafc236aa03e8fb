"""motcua payment service: procedure fees through gateway adapters (being built: issue 4)."""
