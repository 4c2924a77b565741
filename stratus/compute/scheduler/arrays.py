"""NumPy for the scheduler, loaded by its first decision.

The scheduler's column forms (``HostView``, the filters' masks, ``weigh``) run on NumPy, but
a scheduler that has not decided yet (every ``stratus up`` until its first boot) should not
pay for loading it. This module is the scheduler's one import of NumPy: ``arrays.np`` is
NumPy, imported the first time it is read (a module ``__getattr__``, PEP 562) and then kept
as a plain module attribute. Read it as ``arrays.np.<name>`` where it is used: ``from
stratus.compute.scheduler.arrays import np`` would load NumPy with the importing module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    #: One flag per host of a view (a filter's verdict).
    Mask = npt.NDArray[np.bool_]
    #: One number per host of a view (a resource column, a weigher's scores).
    Floats = npt.NDArray[np.float64]
    Ints = npt.NDArray[np.int64]

__all__ = ["np"]


def __getattr__(name: str) -> Any:
    if name == "np":
        import numpy

        globals()["np"] = numpy  # later reads find it without coming here
        return numpy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
