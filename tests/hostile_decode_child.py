"""A decode child gone bad (as a decoder exploited by a hostile file might be): it passes the
start-up handshake, then answers every request with a pickle whose loading would create the
directory named by the request's bytes. A parent that unpickled replies would run it."""
from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection

from actors import decode_protocol as wire


class _Payload:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def main(conn: Connection) -> None:
    import pickle

    wire.recv_header(conn)
    wire.send(conn, {"ready": True})
    while True:
        try:
            request = wire.recv_header(conn)
        except EOFError:
            return
        marker = wire.recv_payload(conn, int(request["nbytes"])).decode()
        conn.send_bytes(pickle.dumps(("ok", (1, 1, 1, 3), _Payload(marker))))


if __name__ == "__main__":
    main(Connection(int(sys.argv[1])))
