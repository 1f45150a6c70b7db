"""samat.cli: the ``samat`` command, on top of the library; nothing imports it.

:mod:`samat.cli.main` builds the parser from one module per command (``add_command``) and runs it.
"""
