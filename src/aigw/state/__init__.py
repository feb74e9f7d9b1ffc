"""Shared state of a deployment: what lives in Redis (or, in the embedded default, in process).

``realtime``: per-minute and per-day usage series per namespace and per model, written by the
gateways off the request path and read by the config center's usage API.
"""
