"""``python -m reconciler.cli``: the same as the ``cuctl`` script."""

from reconciler.cli import main

main()
