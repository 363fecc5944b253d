"""Fuzzing harnesses (atheris); see fuzz/README.md."""
