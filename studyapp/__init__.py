"""studyapp: a research instrument for LLM personalization."""

__version__ = "0.1.0"
