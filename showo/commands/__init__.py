"""Subcommands of the `showo` CLI; each module exposes `register(subparsers)`."""
