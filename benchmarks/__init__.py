"""Speed and memory benchmarks (scripts, not tests): ``python benchmarks/run.py [name ...] [--quick]``."""
