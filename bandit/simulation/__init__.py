"""A synthetic nudge platform with known truth (`world`) and the event traffic it logs (`traffic`)."""
