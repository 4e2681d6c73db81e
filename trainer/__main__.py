"""``python -m trainer``: the same command as ``mlb-train`` (for cron's bare PATH)."""

from mlbert.trainer.cli import main

if __name__ == "__main__":
    main(prog_name="mlb-train")
