"""Gateway adapters: one interface (:class:`~motcua_payment.gateways.base.Gateway`), one
implementation per family of gateways, chosen by name in the settings."""
