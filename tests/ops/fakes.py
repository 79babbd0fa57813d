"""Real processes and sockets for the fault tests: a Redis of the test's own (stopped and
restarted without persistence), a black hole (accepts TCP, never answers), an SMTP
server that refuses or is slow on demand, and gunicorn serving the app."""

import http.client
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


class RedisServer:
    """A redis-server of this test's own, without persistence: a restart loses everything,
    as a production Redis without AOF/RDB does."""

    def __init__(self, tmp_path):
        if not shutil.which("redis-server"):
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.dir = tmp_path
        self.proc = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self):
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # a crash: nothing saved, nothing flushed
            self.proc.wait(timeout=10)

    def restart(self):
        self.stop()
        return self.start()


class BlackHole:
    """Accepts TCP connections and never answers: a Redis that hangs, a network that drops
    replies. Connections are held open until `stop()`."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self):
        return self

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def stop(self):
        self.closed = True
        self.sock.close()
        for conn in self.held:
            conn.close()


class FakeSMTP(socketserver.ThreadingTCPServer):
    """Enough SMTP for Django's backend. `refuse` connections get "421 try later" (as a
    busy or restarting relay answers); each accepted message takes `delay` seconds."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, refuse: int = 0, delay: float = 0.0):
        super().__init__(("127.0.0.1", 0), _SMTPHandler)
        self.port = self.server_address[1]
        self.refuse, self.delay = refuse, delay
        self.refused = 0
        self.messages: list[tuple[list[str], str]] = []  # (recipients, raw message)
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def take_refusal(self) -> bool:
        with self.lock:
            if self.refused < self.refuse:
                self.refused += 1
                return True
            return False

    def recipients(self) -> list[str]:
        with self.lock:
            return [to for rcpts, _ in self.messages for to in rcpts]

    def stop(self):
        self.shutdown()
        self.server_close()


class _SMTPHandler(socketserver.StreamRequestHandler):
    def reply(self, line: str):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        server = self.server
        if server.take_refusal():
            self.reply("421 4.3.2 Service not available, try again later")
            return
        self.reply("220 fake.test ESMTP")
        rcpts = []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            command = line.decode("utf-8", "replace").strip()
            verb = command[:4].upper()
            if verb == "EHLO":
                self.reply("250-fake.test")
                self.reply("250 8BITMIME")
            elif verb in ("HELO", "NOOP", "RSET"):
                rcpts = [] if verb == "RSET" else rcpts
                self.reply("250 OK")
            elif verb == "MAIL":
                rcpts = []
                self.reply("250 OK")
            elif verb == "RCPT":
                rcpts.append(command.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while True:
                    data = self.rfile.readline()
                    if not data or data == b".\r\n":
                        break
                    lines.append(data.decode("utf-8", "replace"))
                time.sleep(server.delay)
                with server.lock:
                    server.messages.append((rcpts, "".join(lines)))
                self.reply("250 OK queued")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")


class Gunicorn:
    """The app under gunicorn, as production runs it (sync workers, 30 s timeout)."""

    def __init__(self, tmp_path, *, workers: int = 2, **env):
        self.port = free_port()
        self.log_path = tmp_path / f"gunicorn-{self.port}.log"
        self.env = {
            **os.environ,
            "DEBUG": "1",
            "PASSAGE_VAR_DIR": str(tmp_path),
            "PASSAGE_TRUSTED_PROXIES": "1",  # the tests name the client in X-Forwarded-For
            "PASSAGE_FORM_MIN_SECONDS": "0",
            "PASSAGE_CONTACT_RATE_PER_HOUR": "5",
            **env,
        }
        self.env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        self.workers = workers
        self.proc = None

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--timeout",
                "30",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if self.get("/contact/")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"gunicorn never answered:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def get(self, path: str, *, headers=None, timeout: float = 40):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read().decode(), response.getheaders()
        finally:
            conn.close()

    def family(self, client_ip: str) -> "Family":
        return Family(self, client_ip)


class Family:
    """A browser on the public form: it fetches the page once (CSRF cookie, start token),
    then sends the form, from `client_ip` (through the one trusted proxy)."""

    def __init__(self, server: Gunicorn, client_ip: str):
        self.server, self.ip = server, client_ip
        status, page, headers = server.get("/contact/", headers={"X-Forwarded-For": client_ip})
        assert status == 200
        cookies = [v for k, v in headers if k.lower() == "set-cookie"]
        self.cookie = "; ".join(c.split(";", 1)[0] for c in cookies)
        self.csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        self.started = re.search(r'name="started" value="([^"]+)"', page).group(1)

    def submit(self, name: str, *, timeout: float = 40) -> tuple[int, str, float]:
        """(status, page, seconds taken)."""
        body = urllib.parse.urlencode(
            {
                "csrfmiddlewaretoken": self.csrf,
                "requester_name": "Parent",
                "relationship": "mother",
                "requester_country": "Iran",
                "sought_names": name,
                "message": "Come home when you want.",
                "consent_processing": "on",
                "consent_nothing_shared": "on",
                "consent_retention": "on",
                "website": "",
                "started": self.started,
            }
        )
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=timeout)
        began = time.monotonic()
        try:
            conn.request(
                "POST",
                "/contact/",
                body=body,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Cookie": self.cookie,
                    "X-Forwarded-For": self.ip,
                },
            )
            response = conn.getresponse()
            page = response.read().decode()
            return response.status, page, time.monotonic() - began
        except (TimeoutError, OSError) as exc:
            return 0, type(exc).__name__, time.monotonic() - began
        finally:
            conn.close()


def thanks(page: str) -> tuple[str, str] | None:
    """The reference and secret the thanks page shows, or None if it is not that page."""
    codes = re.findall(r'<code class="secret[^"]*"[^>]*>([^<]+)</code>', page)
    return (codes[0], codes[1]) if len(codes) == 2 else None
