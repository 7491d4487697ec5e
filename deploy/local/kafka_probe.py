#!/usr/bin/env python3
"""Tiny stdlib-only Kafka readiness probe used by deploy/local/kafka.sh.

Sends ApiVersions (v0) and then Metadata to HOST:PORT and exits 0 only when the broker
answers both and lists at least one broker. Usage: kafka_probe.py [HOST:PORT] [TIMEOUT_S]
"""
import socket
import struct
import sys


def _request(sock, api_key, api_version, corr, body=b""):
    client_id = b"parley-probe"
    header = struct.pack(">hhih", api_key, api_version, corr, len(client_id)) + client_id
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", _read(sock, 4))[0]
    resp = _read(sock, size)
    (rcorr,) = struct.unpack(">i", resp[:4])
    if rcorr != corr:
        raise RuntimeError("correlation id mismatch")
    return resp[4:]


def _read(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def probe(host, port, timeout):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        # ApiVersions v0: error_code int16, [api_key int16, min int16, max int16]
        r = _request(s, 18, 0, 1)
        err, n = struct.unpack(">hi", r[:6])
        if err != 0:
            raise RuntimeError(f"ApiVersions error {err}")
        versions = {}
        for i in range(n):
            k, lo, hi = struct.unpack(">hhh", r[6 + 6 * i: 12 + 6 * i])
            versions[k] = (lo, hi)
        lo, hi = versions[3]  # Metadata
        v = max(lo, min(hi, 4))
        if v > 8:
            raise RuntimeError(f"no non-flexible Metadata version in {lo}..{hi}")
        # Metadata v1..v8: topics array (-1 = all); v4+ adds allow_auto_topic_creation
        body = struct.pack(">i", -1)
        if v >= 4:
            body += b"\x00"
        if v >= 8:
            body += b"\x00\x00"  # include cluster/topic authorized operations
        r = _request(s, 3, v, 2, body)
        off = 4 if v >= 3 else 0  # throttle_time_ms
        (nbrokers,) = struct.unpack(">i", r[off: off + 4])
        if nbrokers < 1:
            raise RuntimeError("no brokers in metadata")
        return nbrokers


def main():
    addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:19092"
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    host, port = addr.rsplit(":", 1)
    try:
        n = probe(host, int(port), timeout)
    except Exception as e:
        print(f"kafka probe {addr}: not ready: {e}", file=sys.stderr)
        return 1
    print(f"kafka probe {addr}: ok, {n} broker(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
