"""hostile.py - a loopback HTTP upstream that misbehaves on purpose, per path, for test_http_hostile.c.

hostile.py --port-file F: listens on 127.0.0.1 port 0, writes the port to F (whole, by a rename) and
serves until killed. Raw sockets, one thread per connection, keep-alive unless a path says otherwise;
it reads a request's head (and its Content-Length body, unless the path answers early) and then
writes the bytes the path names, exactly. /conns counts the connections accepted; /seen lists the
request lines received since the last /seen (so a test can tell what reached the server).
Python's standard library only."""
import argparse
import os
import socket
import struct
import sys
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

conns = 0
seen = []
lock = threading.Lock()


def resp(status, body=b"", headers=b"", reason=b"OK"):
    return (b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\n\r\n%s"
            % (status, reason, headers, len(body), body))


HELLO = resp(200, b"hello")
EVIL = resp(200, b"evil")

# path -> the exact bytes answered (then the connection stays open for the next request).
FIXED = {
    "/hello": HELLO,
    # a second answer in the same write: the next request on this connection would read it
    "/extra": resp(200, b"ok") + EVIL,
    # a body on an answer that has none (to HEAD, and a 204)
    "/headbody": resp(200, b"hello"),
    "/204body": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    "/304body": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello",
    # interim answers, then the real one
    "/1xx": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + resp(200, b"ok"),
    # an interim answer claiming a body: the "body" is read as the next status line
    "/1xxbody": b"HTTP/1.1 100 Continue\r\nContent-Length: 4\r\n\r\nevil" + resp(200, b"ok"),
    # framing conflicts
    "/clte": b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "/clcl": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 4\r\n\r\nokok",
    "/hugecl": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok",
    "/negcl": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok",
    "/hugechunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nok",
    "/tegzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    # header bytes that would break a NUL-separated store, or smuggle a line
    "/nul": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "/fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "/barecr": b"HTTP/1.1 200 OK\r\nX-A: a\rX-B: b\r\nContent-Length: 2\r\n\r\nok",
    "/barelf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "/spacename": b"HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 2\r\n\r\nok",
    # trailers after a chunked body
    "/trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T1: a\r\nX-T2: b\r\n\r\n",
    "/bigtrailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
                   + b"".join(b"X-%05d: %s\r\n" % (i, b"v" * 60) for i in range(1100)) + b"\r\n",
    # 64 KB of one repeated field (joined into one value in headers)
    "/manyhdrs": b"HTTP/1.1 200 OK\r\n" + b"a:v\r\n" * 12900 + b"Content-Length: 2\r\n\r\nok",
    # not HTTP/1.x
    "/http09": b"hello\r\n",
    "/101": b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: evil\r\n\r\n" + EVIL,
    # 70 KB of headers
    "/bighead": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%05d: %s\r\n" % (i, b"v" * 60) for i in range(1100))
                + b"Content-Length: 2\r\n\r\nok",
    # a redirect whose Location has a space, one with a raw control byte, one to another scheme
    "/locspace": resp(302, b"", b"Location: /hel lo\r\n"),
    "/locctl": resp(302, b"", b"Location: /x\x01y\r\n"),
    "/locfile": resp(302, b"", b"Location: file:///etc/passwd\r\n"),
    "/loclong": resp(302, b"", b"Location: /" + b"a" * 9000 + b"\r\n"),
}


def read_head(sock, buf):
    """Reads up to the end of a request head; returns (head, rest) or (None, b"")."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > 65536:
            return None, b""
        try:
            d = sock.recv(65536)
        except OSError:
            return None, b""
        if not d:
            return None, b""
        buf += d
    i = buf.index(b"\r\n\r\n") + 4
    return buf[:i], buf[i:]


def read_body(sock, head, rest):
    n = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":", 1)[1].strip())
    while len(rest) < n:
        d = sock.recv(min(65536, n - len(rest)))
        if not d:
            break
        rest += d
    return rest[:n], rest[n:]


def serve(sock):
    buf = b""
    try:
        while True:
            head, buf = read_head(sock, buf)
            if head is None:
                return
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            with lock:
                seen.append(line)
            parts = line.split(" ")
            u = urlsplit(parts[1] if len(parts) > 1 else "/")
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            path = u.path
            if path == "/early":
                # answers before reading the request's body, keeps the connection and never reads
                # again (a server that stopped reading): what the client still writes piles up
                sock.sendall(resp(200, b"early"))
                time.sleep(30)
                return
            if path == "/reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            _, buf = read_body(sock, head, buf)
            if path == "/conns":
                with lock:
                    n = conns
                sock.sendall(resp(200, str(n).encode()))
            elif path == "/seen":
                with lock:
                    s = "\n".join(seen[:-1])
                    del seen[:]
                sock.sendall(resp(200, s.encode()))
            elif path in ("", "/"):
                # the request-target as it arrived (origin-form starts with '/', RFC 9112 3.2.1)
                t = parts[1] if len(parts) > 1 else ""
                sock.sendall(resp(200, t.encode()) if t.startswith("/") else resp(400, b"bad target"))
            elif path in FIXED:
                sock.sendall(FIXED[path])
            elif path == "/101clean":
                # switches protocols (nobody asked it to) and answers whatever comes next in its own way
                sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: evil\r\n\r\n")
                if sock.recv(65536):
                    sock.sendall(EVIL)
                time.sleep(1)
                return
            elif path == "/tunnel":
                # a proxy's yes to CONNECT: from here on the connection is a tunnel to elsewhere
                sock.sendall(b"HTTP/1.1 200 Connection Established\r\nContent-Length: 0\r\n\r\n")
                if sock.recv(65536):
                    sock.sendall(EVIL)
                time.sleep(1)
                return
            elif path == "/big":
                n = int(q.get("bytes", "0"))
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                for i in range(0, n, 65536):
                    sock.sendall(b"x" * min(65536, n - i))
            elif path == "/lateextra":
                # a whole answer, then 100 ms later another no request asked for
                sock.sendall(resp(200, b"ok"))
                time.sleep(0.1)
                sock.sendall(EVIL)
            elif path == "/closenow":
                # takes the request and closes without a byte of answer
                return
            elif path == "/midchunk":
                sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
                time.sleep(0.05)
                return
            elif path == "/midheaders":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
                return
            elif path == "/noframe":
                sock.sendall(b"HTTP/1.1 200 OK\r\n\r\nuntil-close")
                return
            elif path == "/drip":
                # 100 bytes promised, one every 100 ms (at most 60 s)
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                for _ in range(100):
                    sock.sendall(b"x")
                    time.sleep(0.1)
            elif path == "/sleep":
                time.sleep(int(q.get("ms", "100")) / 1000)
                sock.sendall(HELLO)
            elif path == "/redir":
                time.sleep(int(q.get("ms", "0")) / 1000)
                loc = unquote(q.get("to", "/hello")).encode("latin-1")
                sock.sendall(resp(int(q.get("code", "302")), b"", b"Location: " + loc + b"\r\n"))
            elif path == "/closeafter":
                # a keep-alive answer, then the server closes the idle connection 50 ms later
                sock.sendall(resp(200, b"ok"))
                time.sleep(0.05)
                return
            else:
                sock.sendall(resp(404, b"not found"))
    except OSError:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    global conns
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % ls.getsockname()[1])
    os.rename(tmp, a.port_file)
    while True:
        s, _ = ls.accept()
        with lock:
            conns += 1
        threading.Thread(target=serve, args=(s,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
