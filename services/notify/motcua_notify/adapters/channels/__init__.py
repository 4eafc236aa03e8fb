"""Channels behind one interface: a :class:`~motcua_notify.adapters.channels.base.ChannelAdapter`
sends one notification and says what happened, in the domain's words (a ``SendResult``)."""
