"""archc's version: its one home (pyproject.toml reads it; packages, databases and bench results record it)."""
__version__ = "0.1.0"
