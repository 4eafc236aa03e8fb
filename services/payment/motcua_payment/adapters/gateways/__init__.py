"""Gateway adapters: one interface (:class:`~motcua_payment.adapters.gateways.base.Gateway`),
one implementation per family of gateways, chosen by name in the settings."""
