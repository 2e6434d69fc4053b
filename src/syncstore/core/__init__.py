"""The pure core: no I/O. Clocks, the merge rule, identifiers."""
