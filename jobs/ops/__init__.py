"""What the operators use: the admin, its dashboard, the readiness checks and metrics, and the
clusters' heartbeats."""
