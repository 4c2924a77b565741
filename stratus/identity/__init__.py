"""Identity service (Keystone v3 compatible): users, projects, roles, tokens, catalog."""
