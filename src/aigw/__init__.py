"""aigw: a self-hosted AI gateway in front of OpenAI and Claude."""

__version__ = "0.1.0"
