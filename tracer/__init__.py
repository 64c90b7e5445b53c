"""tracer: step-by-step math traces of generative models, exported as live-formula workbooks.

    import tracer
    run = tracer.run("vae", iterations=4)    # see tracer.api
    run.save("vae.xlsx")
    tracer.verify("vae.xlsx")
    run = tracer.from_torch(model, x, y, nn.MSELoss(), optimizer)   # your own PyTorch model
"""

__version__ = "0.1.0"

_API = ("run", "from_torch", "verify", "gradcheck", "exercise", "check", "bench", "configure", "Run", "MODELS",
        "exercise_class", "check_folder", "check_handmade", "map_template")


def __getattr__(name):
    """The API's functions, imported on first use (so `import tracer.core` stays light)."""
    if name in _API:
        from tracer import api

        return getattr(api, name)
    if name == "TracerError":
        from tracer.errors import TracerError

        return TracerError
    raise AttributeError(f"module 'tracer' has no attribute {name!r}")
