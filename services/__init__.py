"""Long-running services of the loop, one package per service."""
