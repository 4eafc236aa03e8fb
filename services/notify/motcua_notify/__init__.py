"""motcua notify service: tells citizens and systems what happened (being built: issue 5)."""
