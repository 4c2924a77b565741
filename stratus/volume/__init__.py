"""The block storage service (Block Storage v3 compatible): volume-api and volume-manager."""
