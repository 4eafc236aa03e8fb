"""The sandbox payment gateway: a real local HTTP server that behaves like VNPay.

Run it with ``python -m motcua_payment.sandbox`` (``--help`` for options); tests start
:class:`~motcua_payment.sandbox.server.SandboxGateway` in-process.
"""

from motcua_payment.sandbox.server import Merchant, SandboxGateway

__all__ = ["Merchant", "SandboxGateway"]
