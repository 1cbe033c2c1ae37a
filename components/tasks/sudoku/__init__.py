"""Sudoku task: grid encoding, solver, generator tiers, data files, augmentation, metrics.

Importing :mod:`components.tasks.sudoku.task` registers the ``sudoku`` kind.
"""
