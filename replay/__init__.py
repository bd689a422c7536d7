"""Offline replay and counterfactual policy evaluation (issue 5; not built yet)."""
