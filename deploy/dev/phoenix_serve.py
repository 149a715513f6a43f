"""Runs `phoenix serve` (Arize Phoenix, the trace receiver and UI of the
dev services and the trace tests) with its OTLP gRPC server on loopback.

Phoenix binds its HTTP server (UI, OTLP/HTTP on /v1/traces, REST) to
PHOENIX_HOST, but its OTLP gRPC server to every interface ("[::]:port"),
whatever the settings say. o2c exports over OTLP/HTTP only, so the gRPC
server is kept to 127.0.0.1 here instead.
"""

import sys

import grpc.aio._server as _server

_add_insecure_port = _server.Server.add_insecure_port


def _loopback(self, address):
    return _add_insecure_port(self, address.replace("[::]", "127.0.0.1"))


_server.Server.add_insecure_port = _loopback

from phoenix.server.main import main  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "phoenix"
    sys.exit(main())
