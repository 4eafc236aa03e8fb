"""The payment domain: rules and state machines as data, pure Python, no I/O."""
