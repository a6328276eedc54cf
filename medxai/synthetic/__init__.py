"""Synthetic phantoms with known ground truth (lesion masks, labels) for training and validating explainers.

The public API, importable from here: :func:`make_spec`, :func:`render`, :func:`default_grid`,
:func:`make_cohort`, :func:`write_phantom`, :class:`PhantomSpec`, :class:`Phantom`, ``TASK_CLASSES``.
"""
from medxai.synthetic.cohort import make_cohort, write_phantom
from medxai.synthetic.grids import GRID_KINDS, default_grid
from medxai.synthetic.phantom import TASK_CLASSES, Phantom, PhantomSpec, make_spec, render

__all__ = [
    "GRID_KINDS",
    "TASK_CLASSES",
    "Phantom",
    "PhantomSpec",
    "default_grid",
    "make_cohort",
    "make_spec",
    "render",
    "write_phantom",
]
