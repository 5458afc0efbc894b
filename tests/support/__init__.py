"""Test, benchmark and demo harness: real services (Postgres, Redis, anvil), compiled contracts,
traffic generators and an independent reference decoder for integration tests."""
