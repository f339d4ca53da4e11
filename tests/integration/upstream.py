"""upstream.py - the loopback HTTP(S) server test_http_out.c calls from functions (crescent.http).

upstream.py --port-file F [--tls CERT KEY]: listens on 127.0.0.1 port 0, writes the port to F
(whole, by a rename) and serves until killed. HTTP/1.1 with keep-alive; it counts the TCP
connections it accepts (GET /conns) so a test can tell a reused connection from a new one.
Endpoints: /hello, /echo (any method; JSON of what arrived), /conns, /chunked?n=N,
/redirect?to=URL&code=C, /redirect/N (N hops ending at /hello), /loop, /slow?ms=M, /hang,
/big?bytes=B[&chunked=1], /status/N, /close, /truncate (closes mid-body), /headers. Python's standard library only."""
import argparse
import http.server
import json
import os
import select
import ssl
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

conns = 0
conns_lock = threading.Lock()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # 200 connections arrive at once in the concurrency case
    tls = None

    def get_request(self):
        global conns
        sock, addr = self.socket.accept()
        with conns_lock:
            conns += 1
        if self.tls:  # the handshake runs in the connection's thread (setup), not here
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if not isinstance(e, (OSError, ValueError)):  # disconnects, TLS failures: expected
            print("upstream: %s: %r" % (client_address, e), file=sys.stderr)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections end; a test lasts less

    def setup(self):
        if self.server.tls:
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", headers=(), close=False):
        if isinstance(body, str):
            body = body.encode()
        self.send_response_only(status)  # no Server or Date: rawHeaders stay exact
        for k, v in headers:
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        if status in (204, 304):  # no body, no Content-Length (RFC 9110)
            body = b""
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def chunked(self, pieces):
        self.send_response_only(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for p in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
        self.wfile.write(b"0\r\n\r\n")

    def route(self):
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        path = u.path
        text = [("Content-Type", "text/plain")]
        if path == "/echo":
            body = self.read_body()
            headers = {}
            for k, v in self.headers.items():
                k = k.lower()
                headers[k] = headers[k] + ", " + v if k in headers else v
            doc = {"method": self.command, "path": path, "query": u.query, "headers": headers,
                   "body": body.decode("utf-8", "replace")}
            return self.reply(200, json.dumps(doc), [("Content-Type", "application/json")])
        self.read_body()  # whatever came with another method, so keep-alive stays in step
        if path == "/hello":
            return self.reply(200, "hello", text)
        if path == "/conns":
            with conns_lock:
                n = conns
            return self.reply(200, str(n), text)
        if path == "/chunked":
            return self.chunked([b"chunk%d" % i for i in range(int(q.get("n", "3")))])
        if path == "/redirect":
            return self.reply(int(q.get("code", "302")), "redirect", [("Location", q.get("to", "/hello"))])
        if path.startswith("/redirect/"):
            n = int(path[len("/redirect/"):])
            return self.reply(302, "redirect", [("Location", "/hello" if n <= 1 else "/redirect/%d" % (n - 1))])
        if path == "/loop":
            return self.reply(302, "loop", [("Location", "/loop")])
        if path == "/slow":
            time.sleep(int(q.get("ms", "100")) / 1000)
            return self.reply(200, "slow", text)
        if path == "/hang":  # no answer; wait until the client closes (or sends more), at most 60 s
            select.select([self.request], [], [], 60)
            self.close_connection = True
            return
        if path == "/big":
            n = int(q.get("bytes", "0"))
            piece = b"x" * 65536
            if q.get("chunked") == "1":
                return self.chunked([piece[:min(65536, n - i)] for i in range(0, n, 65536)])
            self.send_response_only(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for i in range(0, n, 65536):
                self.wfile.write(piece[:min(65536, n - i)])
            return
        if path.startswith("/status/"):
            n = int(path[len("/status/"):])
            return self.reply(n, "status %d" % n, text)
        if path == "/close":
            return self.reply(200, "closing", text, close=True)
        if path == "/truncate":  # promises 100 bytes, sends 10, closes
            self.send_response_only(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True
            return
        if path == "/headers":
            return self.reply(200, "headers", text + [("Set-Cookie", "a=1"), ("X-Multi", "one"),
                                                      ("Set-Cookie", "b=2"), ("X-Multi", "two")])
        return self.reply(404, "not found", text)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (OSError, ValueError):  # the client went away, a TLS error, a bad request line
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = route


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    a = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    if a.tls:
        srv.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.tls.load_cert_chain(a.tls[0], a.tls[1])
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
