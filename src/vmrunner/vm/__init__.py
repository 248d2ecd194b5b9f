"""Virtual machines: the spec, the state machine, the backends and their records."""
