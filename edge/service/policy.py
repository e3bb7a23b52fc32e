"""The decision policy moved beside the classifier, to ``edge.policy``; this name stays for existing imports."""

from edge.policy import SILENCE, AlertRule, Policy, PolicySettings

__all__ = ["SILENCE", "AlertRule", "Policy", "PolicySettings"]
