#!/usr/bin/env python3
"""A real SMTP server for patrol's email tests: aiosmtpd (pinned, see
PINNED below) on 127.0.0.1, driven by `patrol_standins::SmtpServer`.

Usage:
    python3 smtp_server.py --ensure-venv DIR
        # create DIR as a venv with the pinned aiosmtpd unless already done;
        # safe to run from parallel processes (an flock serialises them);
        # prints the venv's python.

    VENV/bin/python smtp_server.py --dir MAILDIR --mode plain|starttls|tls
        [--cert PEM --key PEM] [--user U --password P [--require-auth]]
        # listens on a free port of 127.0.0.1 and prints one JSON line
        # {"port": N} on stdout once it accepts connections.

Modes:
    plain     no TLS offered at all;
    starttls  STARTTLS offered and required before MAIL (require_starttls);
    tls       implicit TLS from the first byte (SMTPS, "wrapper mode").

AUTH (PLAIN and LOGIN, as aiosmtpd offers them) is enabled when --user is
given. In plain mode AUTH is allowed without TLS (auth_require_tls=False);
in starttls mode only after STARTTLS; in tls mode the whole session is
encrypted, so it is allowed at once. With --require-auth, MAIL before AUTH is
refused with 530.

Every DATA transaction becomes MAILDIR/NNNNNN.json (written to a temporary
name and renamed, so a reader never sees half a file) with the envelope, the
raw message (as Latin-1 text, one character per byte), whether the session was encrypted, who authenticated,
and the message parsed by Python's `email` package (policy.default): decoded
headers, Subject/From/To/Content-Type, the text/plain and text/html bodies,
attachments, and the parser's defects.

Rejections: a file MAILDIR/reject/NNNNNN containing an SMTP reply line (e.g.
`451 4.3.0 Try again later`) makes the next DATA answer that reply instead of
250; each file is used once (whoever unlinks it owns it). The message is still
written, with "accepted": false. A file holding just `stall` makes the server
send nothing after DATA for 120 s (then 451), to test client timeouts.

The server exits when its standard input closes, so it never outlives the test
process that started it, even one killed by a signal.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import itertools
import json
import os
import ssl
import sys
import threading
import time

PINNED = [
    ("aiosmtpd", "1.4.6", "72c99179ba5aa9ae0abbda6994668239b64a5ce054471955fe75f581d2592475"),
    ("atpublic", "9.0.0", "449c3c4f0c74df79749d6fe225ba55e2a2fce34b303f0329211e4d6989ed6f6e"),
    ("attrs", "26.1.0", "c647aa4a12dfbad9333ca4e71fe62ddc36f4e63b2d260a37a8b83d2f043ac309"),
]
# A rejection file holding this word makes DATA hang instead of answering.
STALL = "stall"
STALL_SECONDS = 120
MARKER = ".aiosmtpd-" + "-".join(version for _, version, _ in PINNED) + "-ready"


def ensure_venv(venv: str) -> str:
    """The venv with PINNED, made once (see pinned_venv.py)."""
    from pinned_venv import ensure_venv as ensure_pinned

    return ensure_pinned(venv, PINNED, MARKER)


def take_rejection(maildir: str) -> str | None:
    """The reply of the oldest pending rejection, if any, consuming it."""
    folder = os.path.join(maildir, "reject")
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return None
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                reply = f.read().strip()
            os.unlink(path)
        except FileNotFoundError:
            continue  # taken by someone else
        return reply
    return None


def parse_message(raw: bytes) -> dict:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    defects = [type(d).__name__ for d in message.defects]
    for part in message.walk():
        if part is not message:
            defects.extend(type(d).__name__ for d in part.defects)

    def body(kind: str) -> str | None:
        part = message.get_body(preferencelist=(kind,))
        if part is None:
            return None
        try:
            # Lines end in CRLF on the wire; tests compare text, so LF here
            # (the raw message keeps the wire form).
            return part.get_content().replace("\r\n", "\n")
        except Exception as error:  # a broken part is a finding, not a crash
            defects.append(f"undecodable {kind} part: {error}")
            return None

    def header(name: str) -> str | None:
        value = message.get(name)
        return None if value is None else str(value)

    attachments = []
    for part in message.iter_attachments() if message.is_multipart() else []:
        payload = part.get_payload(decode=True) or b""
        attachments.append({
            "filename": part.get_filename(),
            "content_type": part.get_content_type(),
            "size": len(payload),
        })

    headers = []
    for name, value in message.items():
        try:
            headers.append([name, str(value)])
        except Exception as error:
            defects.append(f"undecodable header {name}: {error}")
            headers.append([name, ""])

    return {
        "headers": headers,
        "subject": header("Subject"),
        "from": header("From"),
        "to": header("To"),
        "content_type": header("Content-Type"),
        "mime_type": message.get_content_type(),
        "text": body("plain"),
        "html": body("html"),
        "attachments": attachments,
        "defects": defects,
    }


class Handler:
    def __init__(self, maildir: str):
        self.maildir = maildir
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        seq = next(self.counter)
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        rejection = take_rejection(self.maildir)
        stall = rejection == STALL
        if stall:
            rejection = "451 4.4.2 Stalled by the test"
        reply = rejection or "250 2.0.0 Message accepted for delivery"
        auth_data = getattr(session, "auth_data", None)
        login = getattr(auth_data, "login", None)
        record = {
            "seq": seq,
            "received_at": time.time(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "mail_options": list(envelope.mail_options),
            "peer_hostname": session.host_name,
            "tls": ssl_object is not None,
            "tls_version": ssl_object.version() if ssl_object is not None else None,
            "auth_login": login.decode("utf-8", "replace") if isinstance(login, bytes) else login,
            "accepted": rejection is None,
            "reply": reply,
            # Latin-1 maps each byte to one code point: the raw bytes, losslessly.
            "raw_latin1": raw.decode("latin-1"),
        }
        record.update(parse_message(raw))
        final = os.path.join(self.maildir, f"{seq:06d}.json")
        temporary = os.path.join(self.maildir, f".{seq:06d}.json.tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.rename(temporary, final)
        if stall:
            # Far longer than any client timeout: the client must give up.
            await asyncio.sleep(STALL_SECONDS)
        return reply


def exit_when_stdin_closes() -> None:
    def watch() -> None:
        try:
            while sys.stdin.buffer.read(1024):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


async def serve(args: argparse.Namespace) -> None:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    context = None
    if args.mode in ("starttls", "tls"):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == args.user.encode()
            and auth_data.password == args.password.encode()
        )
        if ok:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False: aiosmtpd answers 535 itself (handled=True would
        # leave the client waiting for a reply nobody sends).
        return AuthResult(success=False, handled=False)

    handler = Handler(args.dir)

    def factory():
        options = dict(hostname="standin.patrol.test", ident="patrol-standins aiosmtpd")
        if args.mode == "starttls":
            options.update(tls_context=context, require_starttls=True)
        if args.user is not None:
            options.update(
                authenticator=authenticator,
                auth_required=args.require_auth,
                auth_require_tls=(args.mode == "starttls"),
            )
        return SMTP(handler, **options)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, host="127.0.0.1", port=0, ssl=context if args.mode == "tls" else None
    )
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ensure-venv", metavar="DIR")
    parser.add_argument("--dir")
    parser.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--require-auth", action="store_true")
    args = parser.parse_args()

    if args.ensure_venv:
        print(ensure_venv(args.ensure_venv))
        return 0
    if not args.dir:
        parser.error("--dir is required")
    if args.mode != "plain" and not (args.cert and args.key):
        parser.error(f"--mode {args.mode} needs --cert and --key")
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")

    import importlib.metadata

    installed = importlib.metadata.version("aiosmtpd")
    if installed != PINNED[0][1]:
        raise SystemExit(f"aiosmtpd {installed} installed, the stand-in is pinned to {PINNED[0][1]}")

    if os.environ.get("PATROL_SMTP_DEBUG"):
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    exit_when_stdin_closes()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
