"""Replica sweeps: replicas per device x concurrency through the bench runner (see ``run``)."""
