"""pfl: personalized federated learning research framework."""

__version__ = "0.1.0"
