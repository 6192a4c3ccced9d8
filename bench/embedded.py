"""`make bench-instructions` only (`python -m bench.embedded PORT`): bench.asgi's application served by granian
inside this one process (no worker fork), so that valgrind's callgrind can count its instructions and
`callgrind_control` reach it."""
import asyncio
import sys

import uvloop
from granian.constants import Interfaces
from granian.server.embed import Server


async def main(port: int) -> None:
    from bench.asgi import application

    await Server(application, address="127.0.0.1", port=port, interface=Interfaces.ASGI).serve()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1])))
