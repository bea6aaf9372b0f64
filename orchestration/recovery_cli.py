"""``python -m orchestration plan`` (filled in with the recovery issue)."""

from __future__ import annotations

import argparse


def add_plan_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    return None
