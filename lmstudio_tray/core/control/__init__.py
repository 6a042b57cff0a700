"""Watching and acting on LM Studio instances: the monitor and its status cache, actions (load, unload,
switch, server), load estimates and marks, the pool router, model search, health rows, the model-use record
and the shared-instance guard."""
