"""The conductor: compute hosts' way to the database, and reschedules after failed builds."""
