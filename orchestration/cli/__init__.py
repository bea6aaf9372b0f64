"""``python -m orchestration``: prepare, run, faults, plan."""
