"""Pieces every Stratus service stands on: config, db, web, auth, policy, tracing."""
