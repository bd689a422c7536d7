"""Offline replay: logged decisions in, counterfactual estimates of candidate policies out.

Builds on the core (`bandit`) only; the command line feeds it records read from Kafka.
"""
