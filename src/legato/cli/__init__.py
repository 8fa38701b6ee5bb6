"""The ``legato`` command line: a thin layer that parses, calls one library function, prints.

The entry point is ``legato.cli.main:main``; ``python -m legato.cli`` runs the same thing.
Nothing in the library imports this package.
"""
