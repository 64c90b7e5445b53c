"""tracer: step-by-step math traces of generative models, exported as live-formula workbooks."""

__version__ = "0.1.0"
