"""Named search spaces: each module defines ``build(context) -> sweep.spaces.SearchSpace``.

Run one with ``python -m sweep.run --space <module name>``; ``--dry-run``
lists its axes and first trials without training.
"""
