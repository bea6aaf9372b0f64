"""Fault injection for demos, tests and benchmarks (see ``orchestration.faults.store``)."""
