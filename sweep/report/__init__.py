"""Sweep reports: per-cell statistics over seeds, the study's tables, paired tests, figures and a gate.

Run ``python -m sweep.report --experiment NAME``, or call
``sweep.report.build.build_report`` from Python. This package module imports
nothing, so that the worker processes of ``sweep.report.search`` start quickly.
"""
