"""Generated protocol stubs for package ``mnemo.v1`` (scripts/gen_stubs.py)."""
