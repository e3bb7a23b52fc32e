"""The continuous service: audio sources, decision policy, alert sinks and the daemon that wires them."""
