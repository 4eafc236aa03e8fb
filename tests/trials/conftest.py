"""Exhaustive trials: thousands of cases each, tens of seconds in all, no broker or server.

They are not unit tests of one behaviour but sweeps over many (e.g. 4,000 tamperings of a
10,000-entry audit export). `make test` (and so CI) runs them; `make test-unit` leaves them
out so that it stays under a minute.
"""
