"""Ray Serve application (see tracker.ingress)."""
