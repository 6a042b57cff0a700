"""The team hub (`lmstudio-tray serve --hub`): a small HTTP service where the members of a team that share
LM Studio servers report which models their sessions use on which shared instance, and read everyone's.

A surface on the core: it imports only the core's support code (paths, atomic files) and nothing of the other
surfaces. Only model keys, instance names, member names and how long ago a use was are kept: no prompts, no
content.
"""
