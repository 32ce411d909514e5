"""``python -m engine`` runs the CLI."""

from engine.commands.cli import main

if __name__ == "__main__":
    main()
