"""Moved to ``stratus.compute.placement`` (placement is compute-wide, not the scheduler's).

This re-export lives only until ``api/servers.py`` (moving in another branch) imports from
the new home; nothing else may import it.
"""

from stratus.compute.placement import Placement

__all__ = ["Placement"]
