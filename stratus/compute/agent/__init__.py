"""The compute agent: one per host; builds instances with the virt driver."""
