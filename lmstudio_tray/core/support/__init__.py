"""Support code every part uses: paths, atomic files, locks, logging with redaction, secrets."""
