"""The motcua service kit: what every motcua service does the same way.

Settings, the gRPC server and its interceptors, the transactional outbox and its relay, the
consumer runner with its inbox and dead-letter topic, the CloudEvents envelope, metrics, tracing
and logging. A service never copies a piece of it; if two services need something, it grows here.
"""
