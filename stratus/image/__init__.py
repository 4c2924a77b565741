"""Image service (Glance v2 compatible): images, their data in a store, sharing."""
