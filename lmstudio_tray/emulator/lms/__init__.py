"""The fake `lms` CLI: standard library only, so each call starts as fast as a short-lived process can."""
