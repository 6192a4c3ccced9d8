"""python -m simulator [--host 127.0.0.1] [--port 9100]: serve the simulator with granian (1 worker, uvloop)."""

import argparse

from granian import Granian
from granian.constants import Interfaces, Loops
from granian.log import LogLevels


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--log-level", default="info", choices=[level.value for level in LogLevels])
    args = parser.parse_args(argv)
    Granian(
        "simulator.app:app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        loop=Loops.uvloop,
        workers=1,
        backlog=2048,
        workers_kill_timeout=3,  # a request hung by the timeout fault must not hold up shutdown
        log_level=LogLevels(args.log_level),
    ).serve()


if __name__ == "__main__":
    main()
