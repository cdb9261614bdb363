"""The CLI's commands, one module per command group, each with ``register(app)`` (``cli.py``).

Not a programmatic API: every command calls a public function of its package (``bench``,
``fit``, ``plan``, ``serve`` ...), which is what scripts should use.
"""

__all__: list[str] = []
