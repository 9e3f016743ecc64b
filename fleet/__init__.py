"""codema-fleet: fleet autoscaler and session allocator for the Codema hosting platform."""

__version__ = "0.1.0"
