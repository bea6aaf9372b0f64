"""``python -m orchestration …`` (see ``orchestration.cli``)."""

from orchestration.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
