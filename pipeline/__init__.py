"""Stage entry points: thin I/O around the eeoffload library (`python -m pipeline <stage>`, pipeline/cli.py)."""
