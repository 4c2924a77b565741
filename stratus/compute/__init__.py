"""Compute service (Nova v2.1 compatible): API, scheduler, conductor, agents, drivers."""
