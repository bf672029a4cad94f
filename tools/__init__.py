"""The book's tooling: builds, regression checks and numeric settings. Imports neither torch nor ``imreg_lib``."""
