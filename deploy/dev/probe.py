#!/usr/bin/env python3
"""Protocol-level health probes for the dev services (stdlib only).

    probe.py mqtt  HOST PORT   MQTT 3.1.1 CONNECT, expects CONNACK return code 0
    probe.py kafka HOST PORT   Kafka Metadata v1 request, expects >= 1 broker
    probe.py redis HOST PORT   inline PING, expects +PONG
    probe.py clickhouse HOST HTTP_PORT NATIVE_PORT
                               HTTP GET /ping expects "Ok.", then SELECT version()
                               over HTTP (printed on stdout), then a native-protocol
                               Hello as user "default" expects the server's Hello
    probe.py phoenix HOST PORT GET /v1/projects expects a JSON object with "data"

A TCP connect is not enough: Tansu can accept connections while failing every
request, so the Kafka probe asks for real metadata. Exit 0 when healthy, 1 if not.
"""

import json
import socket
import struct
import sys
import urllib.parse
import urllib.request

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


def redis(host, port):
    with socket.create_connection((host, port), TIMEOUT_S) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.sendall(b"PING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(64)
            if not chunk:
                break
            reply += chunk
    if not reply.startswith(b"+PONG"):
        raise RuntimeError("unexpected reply %r" % reply)


def ch_string(data):
    data = data.encode()
    size, prefix = len(data), b""
    while True:  # unsigned LEB128 length
        byte = size & 0x7F
        size >>= 7
        prefix += bytes([byte | (0x80 if size else 0)])
        if not size:
            return prefix + data


def clickhouse_native_hello(host, port):
    # ClientHello: packet 0, client name, version 1.1, revision 54213 (old enough
    # for 18.16 and accepted by newer servers), database, user, password.
    hello = b"\x00" + ch_string("o2c-dev-probe") + b"\x01\x01" + b"\xc5\xa7\x03"
    hello += ch_string("default") + ch_string("default") + ch_string("")
    with socket.create_connection((host, port), TIMEOUT_S) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.sendall(hello)
        packet = recv_exact(sock, 1)[0]
        # Half-close and drain to EOF: closing with the rest of the server's
        # Hello unread would reset the connection, which the server logs as an
        # error with a stack trace.
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass
    if packet != 0:  # 2 would be an Exception (e.g. authentication)
        raise RuntimeError("native port answered packet type %d, not Hello" % packet)


def clickhouse(host, http_port, native_port):
    base = "http://%s:%d" % (host, http_port)
    # No proxy: the dev server is on loopback, and a proxy from the environment
    # would answer for it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base + "/ping", timeout=TIMEOUT_S) as resp:
        body = resp.read()
    if body.strip() != b"Ok.":
        raise RuntimeError("/ping answered %r" % body)
    query = urllib.parse.urlencode({"query": "SELECT version()"})
    with opener.open(base + "/?" + query, timeout=TIMEOUT_S) as resp:
        version = resp.read().decode().strip()
    clickhouse_native_hello(host, native_port)
    print(version)


def phoenix(host, port):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open("http://%s:%d/v1/projects" % (host, port), timeout=TIMEOUT_S) as resp:
        body = json.loads(resp.read())
    if "data" not in body:
        raise RuntimeError("/v1/projects answered %r" % body)


PROBES = {
    "mqtt": (mqtt, 2),
    "kafka": (kafka, 2),
    "redis": (redis, 2),
    "clickhouse": (clickhouse, 3),
    "phoenix": (phoenix, 2),
}


def main(argv):
    if len(argv) < 2 or argv[1] not in PROBES or len(argv) != 2 + PROBES[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    probe = PROBES[argv[1]][0]
    try:
        probe(argv[2], *(int(port) for port in argv[3:]))
    except Exception as exc:  # any failure means "not healthy"
        print("%s %s:%s: %s" % (argv[1], argv[2], ",".join(argv[3:]), exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
