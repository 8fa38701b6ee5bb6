"""``taskflow.jobs``: ``backends``."""
