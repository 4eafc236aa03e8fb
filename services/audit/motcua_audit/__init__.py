"""motcua audit service: a trail of every event and every access to personal data."""
