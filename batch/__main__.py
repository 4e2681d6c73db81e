"""``python -m batch``: the same command as ``mlb-batch`` (useful under cron's bare PATH)."""

from mlbert.batch.cli import main

if __name__ == "__main__":
    main(prog_name="mlb-batch")
