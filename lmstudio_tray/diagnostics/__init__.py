"""Self-diagnosis: `doctor` checks with a fix for each failure, the debug export, and opt-in local telemetry."""
