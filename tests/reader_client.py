"""A simulated reader over HTTP, as a browser with the reading page would be: used by bench/load_bench.py and
tests/test_faults.py. Standard library only: one persistent ``http.client`` connection per reader.

A reader logs in through the login form (CSRF token from the form, session cookie), opens the reading page,
then loops: GET next → GET the lesion's viewer descriptor → GET its seven images and seven masks → think
(uniform in ``think_s``) → POST the read (with probability ``double_submit`` a second, identical POST at the
same moment on a second connection, as a double click would). A 503 or a lost connection is retried after
the server's Retry-After (else 0.25 s doubling up to 2 s) for up to ``retry_for_s``; a connection the server
closed while idle is reopened once without counting. Every attempt is logged (endpoint, status, latency;
status 0: no answer) and so is every acknowledged read (a 201 or 200 answer to a read's POST).

``reconcile`` compares the acknowledged reads with the reads the database holds.
"""

import http.client
import json
import queue
import random
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

from inference.domain import CLASSES

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
RETRIED = {0, 503}
"""Statuses retried: no answer, or the server unavailable for a moment."""
ACKNOWLEDGED = {200, 201}
"""A read's POST answered with one of these locked the read."""


class ReaderFailed(RuntimeError):
    """An answer the simulated reader cannot go on from (bad login, an unexpected status)."""


@dataclass(frozen=True)
class Request:
    reader: str
    endpoint: str
    """login, page, next, lesion, image, mask, read (a read's POST), read-again (the second of a double submit)."""
    status: int
    latency_s: float
    started_s: float
    """``time.monotonic()`` when it was sent."""
    body_bytes: int


@dataclass(frozen=True)
class AcknowledgedRead:
    reader: str
    read: str
    """The read's public id."""
    lesion: str
    phase: str
    status: int


@dataclass
class Log:
    """What every reader did; appended from many threads."""

    requests: list[Request] = field(default_factory=list)
    acknowledged: list[AcknowledgedRead] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, entry: Request) -> None:
        with self.lock:
            self.requests.append(entry)

    def acknowledge(self, entry: AcknowledgedRead) -> None:
        with self.lock:
            self.acknowledged.append(entry)

    def fail(self, failure: str) -> None:
        with self.lock:
            self.failures.append(failure)


@dataclass(frozen=True)
class Behaviour:
    think_s: tuple[float, float] = (5.0, 20.0)
    double_submit: float = 0.1
    """Probability that a read is POSTed twice at once."""
    retry_for_s: float = 30.0
    timeout_s: float = 10.0
    """A request unanswered this long counts as no answer (status 0)."""


class Connection:
    """One keep-alive HTTP connection with the reader's cookies."""

    def __init__(self, base_url: str, cookies: dict[str, str], timeout_s: float):
        url = urlsplit(base_url)
        self.host, self.port, self.timeout_s = url.hostname, url.port, timeout_s
        self.cookies = cookies
        self.http: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None

    def exchange(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, dict, bytes]:
        """(status, headers, body); a kept-alive connection the server closed meanwhile is reopened once."""
        reused = self.http is not None
        try:
            return self._send(method, path, body, headers)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.close()
            if not reused:
                raise
            return self._send(method, path, body, headers)

    def _send(self, method, path, body, headers) -> tuple[int, dict, bytes]:
        if self.http is None:
            self.http = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.http.request(method, path, body=body, headers=headers | ({"Cookie": cookie} if cookie else {}))
        response = self.http.getresponse()
        content = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        if response.will_close:
            self.close()
        return response.status, dict(response.headers), content


class SimulatedReader:
    def __init__(
        self,
        base_url: str,
        study: str,
        username: str,
        password: str,
        log: Log,
        behaviour: Behaviour,
        stop: threading.Event,
        rng: random.Random,
        logged_in: threading.Event,
    ):
        self.base_url, self.study, self.username, self.password = base_url, study, username, password
        self.log, self.behaviour, self.stop, self.rng, self.logged_in = log, behaviour, stop, rng, logged_in
        self.cookies: dict[str, str] = {}
        self.connection = Connection(base_url, self.cookies, behaviour.timeout_s)

    def call(
        self,
        endpoint: str,
        method: str,
        path: str,
        body: dict | str | None = None,
        connection: Connection | None = None,
    ) -> tuple[int, bytes]:
        """One request, retried while the answer is in RETRIED; returns the last (status, body)."""
        connection = connection or self.connection
        headers = {"Accept": "application/json"} if path.startswith("/api/") else {}
        if isinstance(body, dict):
            body = json.dumps(body)
            headers |= {"Content-Type": "application/json", "X-CSRFToken": self.cookies.get("csrftoken", "")}
        elif body is not None:
            headers |= {"Content-Type": "application/x-www-form-urlencoded"}
        deadline, attempt = time.monotonic() + self.behaviour.retry_for_s, 0
        while True:
            started = time.monotonic()
            try:
                status, answer_headers, content = connection.exchange(method, path, body and body.encode(), headers)
            except (OSError, http.client.HTTPException):
                connection.close()
                status, answer_headers, content = 0, {}, b""
            self.log.request(
                Request(self.username, endpoint, status, time.monotonic() - started, started, len(content))
            )
            if status not in RETRIED or time.monotonic() >= deadline:
                return status, content
            delay = float(answer_headers.get("Retry-After") or min(2.0, 0.25 * 2**attempt))
            attempt += 1
            if self.stop.wait(delay):
                return status, content

    def expect(self, endpoint: str, method: str, path: str, body=None, ok=(200,)) -> bytes:
        status, content = self.call(endpoint, method, path, body)
        if status not in ok:
            raise ReaderFailed(f"{self.username}: {method} {path} answered {status}: {content[:200]!r}")
        return content

    def login(self) -> None:
        form = self.expect("login", "GET", "/accounts/login/").decode()
        token = CSRF_FIELD.search(form)
        if token is None:
            raise ReaderFailed(f"{self.username}: the login page has no CSRF token")
        fields = {"username": self.username, "password": self.password, "csrfmiddlewaretoken": token.group(1)}
        self.expect("login", "POST", "/accounts/login/", urlencode(fields), ok=(302,))
        if "sessionid" not in self.cookies:
            raise ReaderFailed(f"{self.username}: the login gave no session")
        self.expect("page", "GET", f"/studies/{self.study}/read/")

    def read_one(self) -> bool:
        """Read the next lesion; False when the reader has finished the study (or was stopped)."""
        api = f"/api/studies/{self.study}"
        task = json.loads(self.expect("next", "GET", f"{api}/next/"))["task"]
        if task is None:
            return False
        viewer = json.loads(self.expect("lesion", "GET", f"{api}/lesions/{task['lesion']}/"))
        for sequence in viewer["sequences"]:
            self.expect("image", "GET", sequence["image"])
            self.expect("mask", "GET", sequence["mask"])
        if self.stop.wait(self.rng.uniform(*self.behaviour.think_s)):
            return False
        body = {
            "lesion": task["lesion"],
            "phase": task["phase"],
            "diagnosis": self.rng.choice(CLASSES),
            "confidence": self.rng.randint(1, 5),
            "malignancy": self.rng.randint(0, 100),
        }
        if self.rng.random() < self.behaviour.double_submit:
            twin, failed = Connection(self.base_url, self.cookies, self.behaviour.timeout_s), []
            again = threading.Thread(target=self.submit, args=(body, "read-again", twin, failed))
            again.start()
            self.submit(body, "read", self.connection)
            again.join()
            twin.close()
            if failed:
                raise failed[0]
        else:
            self.submit(body, "read", self.connection)
        return not self.stop.is_set()

    def submit(self, body: dict, endpoint: str, connection: Connection, failed: list | None = None) -> None:
        """POST the read; a failure is raised, or put in ``failed`` (from a thread of its own)."""
        status, content = self.call(endpoint, "POST", f"/api/studies/{self.study}/reads/", body, connection)
        if status not in ACKNOWLEDGED:
            failure = ReaderFailed(f"{self.username}: submitting a read answered {status}: {content[:200]!r}")
            if failed is None:
                raise failure
            failed.append(failure)
            return
        read = json.loads(content)["read"]
        self.log.acknowledge(AcknowledgedRead(self.username, read["id"], read["lesion"], read["phase"], status))

    def run(self) -> bool:
        """Log in, then read until the study is finished (True) or ``stop`` is set (False). A failure not
        caused by stopping is logged."""
        try:
            self.login()
            self.logged_in.set()
            while self.read_one():
                pass
            return not self.stop.is_set()
        except ReaderFailed as failure:
            if not self.stop.is_set():
                self.log.fail(str(failure))
            return False
        finally:
            self.logged_in.set()
            self.connection.close()


class Crowd:
    """Simulated readers on threads of their own, taking accounts from a shared pool: a reader who finishes
    the study hands over to the next account; one who was stopped puts theirs back."""

    def __init__(
        self, base_url: str, study: str, accounts: list[tuple[str, str]], behaviour: Behaviour, log: Log, seed: int = 0
    ):
        self.base_url, self.study, self.behaviour, self.log = base_url, study, behaviour, log
        self.accounts = queue.SimpleQueue()
        for account in accounts:
            self.accounts.put(account)
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.logins: list[threading.Event] = []

    def add(self, clients: int, stagger_s: float = 0.0) -> None:
        """Start ``clients`` more readers, each after a delay uniform in [0, ``stagger_s``] seconds."""
        for _ in range(clients):
            logged_in = threading.Event()
            rng = random.Random(self.rng.getrandbits(64))
            thread = threading.Thread(target=self._client, args=(logged_in, rng, rng.uniform(0, stagger_s)))
            self.logins.append(logged_in)
            self.threads.append(thread)
            thread.start()

    def wait_logged_in(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        return all(event.wait(max(0.0, deadline - time.monotonic())) for event in self.logins)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()

    def _client(self, logged_in: threading.Event, rng: random.Random, delay_s: float) -> None:
        if self.stopping.wait(delay_s):
            return logged_in.set()
        while not self.stopping.is_set():
            try:
                username, password = self.accounts.get_nowait()
            except queue.Empty:
                break
            reader = SimulatedReader(
                self.base_url, self.study, username, password, self.log, self.behaviour, self.stopping, rng, logged_in
            )
            if not reader.run():  # stopped, or failed (logged): the account goes back, this client ends
                self.accounts.put((username, password))
                break
        logged_in.set()


def reconcile(acknowledged: list[AcknowledgedRead], stored: list[dict]) -> dict[str, list]:
    """Acknowledged reads against the database's first reads (``stored``: dicts with read, reader, lesion,
    phase). lost: acknowledged but not stored; duplicated: a (reader, lesion, phase) with more than one read
    id, acknowledged or stored; unacknowledged: stored reads no answer acknowledged (a request given up)."""
    stored_ids = {row["read"] for row in stored}
    acknowledged_ids = {a.read for a in acknowledged}
    ids = defaultdict(set)
    for a in acknowledged:
        ids[a.reader, a.lesion, a.phase].add(a.read)
    for row in stored:
        ids[row["reader"], row["lesion"], row["phase"]].add(row["read"])
    return {
        "lost": sorted(acknowledged_ids - stored_ids),
        "duplicated": sorted(key for key, reads in ids.items() if len(reads) > 1),
        "unacknowledged": sorted(stored_ids - acknowledged_ids),
    }
