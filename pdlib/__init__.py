"""pdlib: the theory of prefill/decode exclusive batching, tested against real engines."""
__version__ = "0.1.0"
