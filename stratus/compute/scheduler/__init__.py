"""The scheduler: host states, filters, weighers and atomic resource claims."""
