"""A real SMTP server (aiosmtpd) for the notification suites.

Started by tests/src/smtp.rs with the python3 of the venv that
`deploy/dev/aiosmtpd.sh install` makes:

    server.py --dir DIR [--delay-ms N] [--exit-on-stdin-eof]

It binds 127.0.0.1 on a free port and prints one line, `listening <port>`,
once it accepts connections. What it does with each message:

- RCPT TO: a local part starting with `reject` gets
  `550 5.1.1 mailbox unavailable`, one starting with `tempfail` gets
  `451 4.3.0 try again later`; any other recipient is accepted.
- DATA: if a recipient's local part starts with `hold`, the message is
  first noted in `DIR/held.jsonl` (`{"message_id", "rcpt_tos"}`) and then
  held, unanswered, until the file `DIR/release` exists. Then `--delay-ms`
  passes.
- A client that goes away during the hold or the delay (aiosmtpd cancels
  the session's task on EOF or a lost connection) leaves nothing in
  `messages.jsonl`: the server had not accepted its message. It is noted
  in `DIR/abandoned.jsonl` (`{"message_id", "rcpt_tos"}`) instead.
- Accepting: the message is appended as one JSON line to
  `DIR/messages.jsonl` (`received_ns`, `mail_from`, `rcpt_tos`,
  `message_id`, `subject`, `headers`, `body`: the text/plain part,
  decoded, lines ending in a bare LF), written and fsynced before
  `250` is answered. One writer thread does the appends: the lines waiting
  while it syncs go out together in one write and one fsync (a group
  commit), so no session waits for another's fsync in turn.
"""

import argparse
import asyncio
import concurrent.futures
import email
import email.policy
import functools
import json
import logging
import os
import sys
import time
from email import headerregistry

from aiosmtpd.smtp import SMTP

RELEASE_POLL_S = 0.020
HOSTNAME = "o2c-smtp-test"


def local_part(address):
    """The part of `address` before its last `@`, lower-cased."""
    return address.rpartition("@")[0].lower() if "@" in address else address.lower()


class CachingRegistry(headerregistry.HeaderRegistry):
    """policy.default's header classes, each (name, value) parsed once.

    Parsing a header (Content-Type above all, which finding and decoding
    the body reads several times) is most of the cost of a message, and a
    service's mail repeats the same few values; the parsed headers are
    immutable, so sharing them is safe."""

    @functools.lru_cache(maxsize=4096)
    def __call__(self, name, value):
        return super().__call__(name, value)


POLICY = email.policy.default.clone(header_factory=CachingRegistry())


def parse_message(content):
    """The fields of messages.jsonl that come from the message itself."""
    # Lines end in CRLF on the wire; the record keeps Python's "\n".
    unix = content.replace(b"\r\n", b"\n")
    msg = email.message_from_bytes(unix, policy=POLICY)
    headers = {name: header_value(name, raw) for name, raw in msg.raw_items()}
    return {
        "message_id": headers.get("Message-ID", "").strip(),
        "subject": headers.get("Subject", ""),
        "headers": headers,
        "body": plain_body(msg),
    }


def header_value(name, raw):
    """A header's value as sent, unfolded, with RFC 2047 words decoded (as
    policy.default decodes them) and raw UTF-8 (RFC 6532) read as such."""
    if "=?" in raw:
        return text(str(POLICY.header_fetch_parse(name, raw)))
    return text(raw.replace("\n", ""))


def text(value):
    """`value` with the bytes the parsers escaped as surrogates (all that
    were not ASCII) read as UTF-8: JSON cannot carry surrogates."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def plain_body(msg):
    """The decoded text/plain body, or "" when the message has none."""
    part = msg.get_body(preferencelist=("plain",))
    if part is None:
        return ""
    try:
        text = part.get_content()
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True) or b""
        text = payload.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n")


class JsonlWriter:
    """Appends JSON lines to one file, each flushed and fsynced before
    `append` returns. Lines queued while a sync runs are written by the
    next one together (group commit), on a single thread so that lines
    are never interleaved."""

    def __init__(self, path):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._pending = []
        self._task = None

    async def append(self, record):
        line = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append((line, done))
        if self._task is None:
            # Referenced until it ends: the loop holds tasks weakly.
            self._task = loop.create_task(self._drain())
        # A caller cancelled here has its line written all the same: it
        # was handed over.
        await done

    async def _drain(self):
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await loop.run_in_executor(
                        self._pool, self._write, b"".join(line for line, _ in batch)
                    )
                except OSError as error:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(error)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._task = None

    def _write(self, data):
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)


class Handler:
    """The aiosmtpd handler: recipient policy, hold, delay, and the log."""

    def __init__(self, directory, delay_ms):
        self.release = os.path.join(directory, "release")
        self.delay_s = delay_ms / 1000.0
        self.messages = JsonlWriter(os.path.join(directory, "messages.jsonl"))
        self.held = JsonlWriter(os.path.join(directory, "held.jsonl"))
        self.abandoned = os.path.join(directory, "abandoned.jsonl")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = local_part(address)
        if local.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("tempfail"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        record = parse_message(envelope.original_content)
        rcpt_tos = [text(r) for r in envelope.rcpt_tos]
        note = {"message_id": record["message_id"], "rcpt_tos": rcpt_tos}
        try:
            await self._before_accepting(note)
        except asyncio.CancelledError:
            # A lost connection cancels the session's task (aiosmtpd's
            # connection_lost and eof_received do): nothing was accepted.
            append_now(self.abandoned, note)
            raise
        if server.transport is None or server.transport.is_closing():
            append_now(self.abandoned, note)
            return "451 4.4.2 connection lost"
        line = {
            "received_ns": time.time_ns(),
            "mail_from": text(envelope.mail_from or ""),
            "rcpt_tos": rcpt_tos,
        }
        line.update(record)
        await self.messages.append(line)
        return "250 2.0.0 OK"

    async def _before_accepting(self, note):
        """The hold, then the delay."""
        if any(local_part(r).startswith("hold") for r in note["rcpt_tos"]):
            await self.held.append(note)
            while not os.path.exists(self.release):
                await asyncio.sleep(RELEASE_POLL_S)
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)


def append_now(path, record):
    """Appends one JSON line to `path` at once, flushed (for rare events)."""
    line = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


async def watch_stdin_eof(stop):
    """Sets `stop` when stdin closes (the harness that started us died)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    stop.set()


async def serve(args):
    os.makedirs(args.dir, exist_ok=True)
    handler = Handler(args.dir, args.delay_ms)
    loop = asyncio.get_running_loop()

    def factory():
        return SMTP(
            handler,
            hostname=HOSTNAME,
            enable_SMTPUTF8=True,
            decode_data=False,
            loop=loop,
        )

    server = await loop.create_server(factory, host="127.0.0.1", port=0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"listening {port}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    # The loop holds tasks weakly: keep the watcher referenced.
    watcher = loop.create_task(watch_stdin_eof(stop)) if args.exit_on_stdin_eof else None
    async with server:
        await stop.wait()
    if watcher is not None:
        await watcher


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="where messages.jsonl and held.jsonl go")
    parser.add_argument("--delay-ms", type=int, default=0, help="pause in DATA before accepting")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when stdin closes (the harness keeps it open while it lives)",
    )
    args = parser.parse_args()
    if args.delay_ms < 0:
        parser.error("--delay-ms must be >= 0")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
