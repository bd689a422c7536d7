"""The `nudge` command line, above the packages it composes: `bandit` (the core), `streams`
(Kafka) and `replay` (offline evaluation). Nothing below imports it."""
