"""Files ``vmrunner init`` writes into a repository (read with ``importlib.resources``)."""
