"""``python -m exporter`` runs ``mlb-export`` (for cron's bare PATH)."""

from mlbert.exporter.cli import main

if __name__ == "__main__":
    main(prog_name="python -m exporter")
