"""What every app of the back office stands on and nothing of ours: database connections, Prometheus metrics, the
request log, the client's address behind a proxy, the health registry. Imports Django and libraries only."""
