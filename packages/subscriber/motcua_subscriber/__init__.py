"""motcua subscriber kit: consume motcua events safely from outside this repository.

* :class:`Subscriber` — typed handlers per event type (by protobuf message class or by
  CloudEvents type), checked against the topic registry when registered;
* it runs on the motcua services' own consumer runner: CloudEvents decoding, protobuf parsing,
  an inbox so each event id is applied once in the handler's transaction, bounded retries,
  then the topic's ``.dlq``;
* :class:`~motcua_subscriber.testing.FakeBroker` — the one-line test double
  (``FakeBroker(subscriber).publish(message)``) for unit tests without a broker.

The catalogue of what can be subscribed to: docs/events/ (generated from the registry).
"""

from motcua_kit.consumer import PermanentError
from motcua_kit.envelope import Event
from motcua_kit.registry import TopicRegistry, default_registry, load_registry
from motcua_subscriber.settings import SubscriberSettings
from motcua_subscriber.subscriber import Delivery, Running, Subscriber, SubscriptionError

__all__ = [
    "Delivery",
    "Event",
    "PermanentError",
    "Running",
    "Subscriber",
    "SubscriberSettings",
    "SubscriptionError",
    "TopicRegistry",
    "default_registry",
    "load_registry",
]
