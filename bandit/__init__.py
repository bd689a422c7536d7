"""nudgebandit core: events, rewards, exploration, Vowpal Wabbit policies and the simulator.

This package imports neither `streams` nor `replay`; both build on it.
"""
