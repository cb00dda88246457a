"""Webhook ingest benchmark: SMS and Telegram through our gateway vs a minimal handler.

Ours: verify (Twilio signature / Telegram secret) -> parse -> pseudonymize -> seal the address
-> record (dedupe key) + vault, then answer; the dialogue runs later in the worker (turned off
here, so only the request path is measured). Minimal: the textbook FastAPI handler that only
parses the form (FastAPI `Form` fields) and inserts one row (SQLModel session, commit) into
SQLite, without verification or dedupe. Same machine, same load generator, one uvicorn worker
each.

    .venv/bin/python bench/ingest.py [--requests 3000] [--concurrency 32]

Prints requests/s and p50/p99 latency for each, the ratio ours/minimal (goal >= 1.0), and the
gateway's resident memory after the run (goal <= 150 MB). Also each server's CPU time per
request (all its threads): the load generator shares the machine, so on a busy machine the
rates move with whatever else runs (and with how the scheduler shares the cores out), the
CPU per request much less. Then it counts the rows each server stored and stops with an
error unless every request left one.

The load generator is a lean keep-alive HTTP/1.1 client (see load()), not an HTTP library:
on 2 shared cores httpx spent about 2.5 ms of CPU per request, twice what either server
spends, so it capped both near 400 req/s and the ratio measured the client, not the servers.
"""

import argparse
import asyncio
import json
import os
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TWILIO_TOKEN = "f" * 32
TELEGRAM_SECRET = "bench-secret"
PUBLIC = "https://tips.example.org"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- servers (run in a child process) -----------------------------------------------------

def serve_ours(port: int, data: Path) -> None:
    import uvicorn
    from cryptography.fernet import Fernet

    from bot.app import create_app
    from config import load_settings

    settings = load_settings(
        environment="production", data_dir=data,
        database={"url": f"sqlite:///{data / 'ours.db'}"},
        privacy={"pepper": "p" * 32, "vault_key": Fernet.generate_key().decode()},
        rasa={"url": "http://127.0.0.1:9", "token": "t" * 16},
        actions={"token": "a" * 16},
        twilio={"auth_token": TWILIO_TOKEN, "public_base_url": PUBLIC, "sms_from": "+15550000000"},
        telegram={"bot_token": "1:" + "x" * 30, "webhook_secret": TELEGRAM_SECRET},
        channels={"sms": True, "telegram": True, "local": False},
    )
    uvicorn.run(create_app(settings, run_worker=False), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


def serve_minimal(port: int, data: Path) -> None:
    """The textbook minimal handler: FastAPI form fields, one SQLModel row, commit."""
    import uvicorn
    from fastapi import FastAPI, Form, Response
    from sqlmodel import Field, Session, SQLModel, create_engine

    class Message(SQLModel, table=True):
        id: int | None = Field(default=None, primary_key=True)
        sid: str
        sender: str
        body: str

    engine = create_engine(f"sqlite:///{data / 'minimal.db'}", connect_args={"check_same_thread": False})
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    SQLModel.metadata.create_all(engine)
    app = FastAPI()

    @app.post("/webhooks/sms")
    def sms(MessageSid: str = Form(), From: str = Form(), Body: str = Form("")) -> Response:
        with Session(engine) as session:
            session.add(Message(sid=MessageSid, sender=From, body=Body))
            session.commit()
        return Response(b"<Response></Response>", media_type="application/xml")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- load ------------------------------------------------------------------------------------

Request = tuple[str, dict[str, str], dict[str, str] | None, bytes | None]


def sms_requests(count: int, *, first: int = 0) -> list[Request]:
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TWILIO_TOKEN)
    out = []
    for n in range(first, first + count):
        form = {"MessageSid": f"SM{n:032x}", "From": f"+2547{n % 5000:08d}", "To": "+15550000000",
                "Body": "armed men near the market this morning", "NumMedia": "0",
                "FromCity": "NAIROBI", "FromCountry": "KE"}
        signature = validator.compute_signature(f"{PUBLIC}/webhooks/sms", form)
        out.append(("/webhooks/sms", {"X-Twilio-Signature": signature}, form, None))
    return out


def telegram_requests(count: int, *, first: int = 0) -> list[Request]:
    out = []
    for n in range(first, first + count):
        chat = 500_000_000 + n % 5000
        update = {"update_id": 10_000 + n, "message": {
            "message_id": n + 1, "date": 1_700_000_000, "text": "armed men near the market",
            "chat": {"id": chat, "type": "private", "first_name": "A"},
            "from": {"id": chat, "is_bot": False, "first_name": "A", "language_code": "en"}}}
        out.append(("/webhooks/telegram", {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET,
                                           "Content-Type": "application/json"},
                    None, json.dumps(update).encode()))
    return out


def encode(request: Request, port: int) -> bytes:
    """One HTTP/1.1 request as the bytes on the wire, built before the clock starts."""
    path, headers, form, content = request
    if form is not None:
        body = urlencode(form).encode()
        headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    else:
        body = content or b""
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def load(base: str, requests: list[Request], concurrency: int) -> tuple[float, list[float], int]:
    """`concurrency` keep-alive connections, each sending its next request when the answer
    to the last one is in (like wrk). A lean client on purpose: it shares the 2 cores with
    the server, and an HTTP library costs more CPU per request than the servers under test
    (httpx: about 2.5 ms), so it, not the server, would set the rate."""
    port = int(base.rsplit(":", 1)[1])
    wire = [encode(request, port) for request in requests]
    latencies: list[float] = []
    failures = 0

    async def connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while wire:
                data = wire.pop()
                started = time.perf_counter()
                writer.write(data)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding":
                        raise RuntimeError("chunked answers are not expected here")
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - started) * 1000)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return len(requests) / elapsed, latencies, failures


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the server process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured(pid: int, base: str, requests: list, concurrency: int) -> tuple:  # type: ignore[type-arg]
    """load(), plus the CPU milliseconds per request of the server and of the load generator:
    on a shared machine the rate moves with whatever else runs, CPU per request much less."""
    server, client = cpu_seconds(pid), own_cpu_seconds()
    rate, latencies, failures = asyncio.run(load(base, requests, concurrency))
    return (rate, latencies, failures, (cpu_seconds(pid) - server) * 1000 / len(requests),
            (own_cpu_seconds() - client) * 1000 / len(requests))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(kind: str, data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port),
                                "--data", str(data)], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(base + "/healthz" if kind == "ours" else base + "/docs", timeout=1)
            return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{kind} server did not start")


def rows_in(database: Path, table: str) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["ours", "minimal"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.serve:
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        (serve_ours if args.serve == "ours" else serve_minimal)(args.port, args.data)
        return

    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        minimal, base = start("minimal", data)
        try:
            asyncio.run(load(base, sms_requests(200, first=10_000_000), args.concurrency))  # warm-up
            rows.append(("minimal: Form fields + SQLModel row", *measured(
                minimal.pid, base, sms_requests(args.requests), args.concurrency)))
        finally:
            minimal.terminate()
            minimal.wait()
        ours, base = start("ours", data)
        try:
            warm = 10_000_000  # provider ids the measured runs never use
            asyncio.run(load(base, sms_requests(200, first=warm), args.concurrency))
            asyncio.run(load(base, telegram_requests(200, first=warm), args.concurrency))
            rows.append(("ours: SMS webhook", *measured(
                ours.pid, base, sms_requests(args.requests), args.concurrency)))
            rows.append(("ours: Telegram webhook", *measured(
                ours.pid, base, telegram_requests(args.requests), args.concurrency)))
            memory = rss_mb(ours.pid)
        finally:
            ours.terminate()
            ours.wait()
        # Every answered request left its row: a fast 200 that stored nothing would be no result.
        stored = {"minimal": rows_in(data / "minimal.db", "message"),
                  "ours": rows_in(data / "ours.db", "inbound_message")}
    expected = {"minimal": args.requests + 200, "ours": 2 * (args.requests + 200)}
    if stored != expected:
        raise SystemExit(f"rows stored {stored}, expected {expected} (warm-up included)")

    print(f"{args.requests} requests each, {args.concurrency} concurrent, one uvicorn worker, "
          f"{os.cpu_count()} cores (load generator on the same machine)")
    print(f"machine load average (1 min) before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f}")
    print(f"{'':36} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8} "
          f"{'CPU ms/req: server':>18} {'load gen':>8}")
    for name, rate, latencies, failures, cpu, client_cpu in rows:
        print(f"{name:36} {rate:8.0f} {pct(latencies, 50):8.1f} {pct(latencies, 99):8.1f} "
              f"{failures:8d} {cpu:18.2f} {client_cpu:8.2f}")
    baseline = rows[0][1]
    for name, rate, *_ in rows[1:]:
        print(f"ratio {name} / minimal: {rate / baseline:.2f} (goal >= 1.0)")
    print(f"gateway RSS after the run: {memory:.0f} MB (goal <= 150 MB)")
    print(f"rows stored (warm-up included): minimal {stored['minimal']}, ours {stored['ours']}")


if __name__ == "__main__":
    main()
