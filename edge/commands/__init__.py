"""One module per ``python -m edge`` subcommand."""
