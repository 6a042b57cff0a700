"""The OpenCode hook logic, pure: verdicts, transforms (system context, message budget, compaction notes)
and session health from forwarded events."""
