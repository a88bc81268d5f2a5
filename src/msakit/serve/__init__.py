"""`msakit serve`: a REST service over `msakit.service` (needs the ``[serve]`` extra)."""

from msakit.serve.config import ServeConfig, is_loopback

__all__ = ["ServeConfig", "create_app", "is_loopback"]


def __getattr__(name: str) -> object:
    if name == "create_app":  # imports FastAPI only when the app is built
        from msakit.serve.app import create_app

        return create_app
    raise AttributeError(name)
