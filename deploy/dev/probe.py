#!/usr/bin/env python3
"""Protocol-level health probes for the dev services (stdlib only).

    probe.py mqtt  HOST PORT   MQTT 3.1.1 CONNECT, expects CONNACK return code 0
    probe.py kafka HOST PORT   Kafka Metadata v1 request, expects >= 1 broker

A TCP connect is not enough: Tansu can accept connections while failing every
request, so the Kafka probe asks for real metadata. Exit 0 when healthy, 1 if not.
"""

import socket
import struct
import sys

TIMEOUT_S = 3.0


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def mqtt(host, port):
    client_id = b"o2c-dev-probe"
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a" + struct.pack(">H", len(client_id)) + client_id
    with socket.create_connection((host, port), TIMEOUT_S) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.sendall(bytes([0x10, len(variable)]) + variable)
        connack = recv_exact(sock, 4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError("unexpected CONNACK %s" % connack.hex())
        sock.sendall(b"\xe0\x00")


def kafka(host, port):
    client_id = b"o2c-dev-probe"
    correlation = 0x0102
    # api_key 3 (Metadata), version 1, correlation id, client id, topics = null (all)
    body = struct.pack(">hhih", 3, 1, correlation, len(client_id)) + client_id
    body += struct.pack(">i", -1)
    with socket.create_connection((host, port), TIMEOUT_S) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        response = recv_exact(sock, size)
    got_correlation, brokers = struct.unpack(">ii", response[:8])
    if got_correlation != correlation:
        raise RuntimeError("correlation id %d, expected %d" % (got_correlation, correlation))
    if brokers < 1:
        raise RuntimeError("metadata lists no broker")


def main(argv):
    if len(argv) != 4 or argv[1] not in ("mqtt", "kafka"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        {"mqtt": mqtt, "kafka": kafka}[argv[1]](argv[2], int(argv[3]))
    except Exception as exc:  # any failure means "not healthy"
        print("%s %s:%s: %s" % (argv[1], argv[2], argv[3], exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
