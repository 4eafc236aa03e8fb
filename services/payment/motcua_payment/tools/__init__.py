"""Commands for people working on the payment service."""
