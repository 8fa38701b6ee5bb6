"""``taskflow.conductors``: ``backends``."""
