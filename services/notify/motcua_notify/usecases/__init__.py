"""The service layer's use cases, one module per responsibility: recording the intents an event
calls for (:mod:`.recording`), claiming and sending them (:mod:`.sending`) and writing what
came of them (:mod:`.outcomes`). :mod:`motcua_notify.service` wires them and delegates."""
