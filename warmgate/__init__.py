"""warmgate: warm a slow-starting app and say, measurably, when it is ready for traffic."""

__version__ = "0.1.0"
