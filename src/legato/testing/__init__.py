"""Shipped test support: conformance suites every backend must pass, service fixtures, a TCP
proxy for outage tests, and a fake clock.

Nothing here is imported by the library itself.
"""
