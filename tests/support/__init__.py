"""What the tests share besides fixtures: the in-process harness, database servers, terminals, audit logs."""
