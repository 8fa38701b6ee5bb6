"""``taskflow.persistence``: ``backends`` and ``models``."""
