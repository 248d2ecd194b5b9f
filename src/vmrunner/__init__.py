"""vmrunner: run CI work inside throwaway virtual machines, and learn from every command run."""

__version__ = "0.1.0"
