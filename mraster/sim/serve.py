"""Run an ASGI app with uvicorn on 127.0.0.1 in a background thread (tests, offline demos)."""
from __future__ import annotations

import socket
import threading
import time

import uvicorn

# how long an idle connection stays open, as on an exchange's front end (nginx's default): the
# bot keeps its connections across the pause between cycles, and a server closing them after
# uvicorn's 5 s would hide whether it does
KEEP_ALIVE_S = 75


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ThreadedServer:
    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None,
                 lifespan: str = "off") -> None:
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                log_config=None, lifespan=lifespan,
                                timeout_graceful_shutdown=2, timeout_keep_alive=KEEP_ALIVE_S)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> "ThreadedServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:  # uvicorn flips this once the socket accepts
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> "ThreadedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
