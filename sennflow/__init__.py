"""The ``sennflow`` command line (:mod:`sennflow.cli`) and what it needs around the flows:
help listed from the composed config, progress bars, signal handling.

Nothing below ``flows/`` imports this package; ``conf/`` is installed as its package data
(``sennflow/conf``) by a non-editable install (see ``pyproject.toml``).
"""
