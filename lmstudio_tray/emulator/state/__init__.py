"""The emulated LM Studio process itself: settings, downloaded models, loaded instances, faults, the request
log and the files it keeps in its home. Nothing here knows HTTP."""
