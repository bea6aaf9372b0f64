"""``python -m orchestration …`` (see ``orchestration.cli.main``)."""

from orchestration.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
