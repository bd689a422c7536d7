"""The decision service behind `nudge serve`: HTTP app, spool, decision log, metrics."""
