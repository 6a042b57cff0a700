"""Operating-system differences, one small interface per concern and one module per platform.

Nothing here imports a GUI toolkit; platform APIs (winreg, launchctl) sit behind injectable seams so the
logic is tested on any OS.
"""
