"""GitHub Actions workflow semantics: pure code, no I/O."""
