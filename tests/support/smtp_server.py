"""An SMTP server for bullhorn's tests: aiosmtpd (a maintained implementation of RFC 5321
with STARTTLS, implicit TLS and AUTH), listening on a loopback port given by the test.

Each message accepted is parsed with Python's email package and written as one JSON line
to --out: the envelope, the headers a mail client threads by, and each MIME part (its
type, disposition, Content-ID, Content-Description and text). Recipients behave by their
local part, as real servers do:

    nobody@...     550 5.1.1 at RCPT (no such user)
    full@...       452 4.2.2 at RCPT (mailbox full)
    lost@...       the message is kept, then the connection drops before the answer
    greylist@...   451 4.7.1 at RCPT the first time, accepted after (greylisting)
    anything else  accepted

With --fail-data N the first N messages are refused at the end of DATA with 451.
Prints "ready" on stdout once it accepts connections; stops on SIGTERM.
"""

import argparse
import email
import email.policy
import json
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def parse(content: bytes) -> dict:
    msg = email.message_from_bytes(content, policy=email.policy.default)
    parts = []
    for part in msg.walk():
        if part.is_multipart():
            parts.append({"type": part.get_content_type()})
            continue
        entry = {
            "type": part.get_content_type(),
            "disposition": part.get_content_disposition(),
            "filename": part.get_filename(),
            "cid": part.get("Content-ID"),
            "description": str(part.get("Content-Description")) if part.get("Content-Description") else None,
            "size": len(part.get_payload(decode=True) or b""),
        }
        if part.get_content_maintype() == "text":
            entry["text"] = part.get_content()
        parts.append(entry)
    header = lambda name: str(msg[name]) if msg[name] is not None else None
    return {
        "subject": header("Subject"),
        "from": header("From"),
        "to": header("To"),
        "reply_to": header("Reply-To"),
        "message_id": header("Message-ID"),
        "in_reply_to": header("In-Reply-To"),
        "references": header("References"),
        "bcc_header": header("Bcc"),
        "parts": parts,
    }


class Handler:
    def __init__(self, out: str, fail_data: int, tls: bool):
        self.out = out
        self.fail_data = fail_data
        self.tls = tls
        self.greylisted = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local == "nobody":
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if local == "full":
            return "452 4.2.2 <%s>: Mailbox full" % address
        if local == "greylist" and address not in self.greylisted:
            self.greylisted.add(address)
            return "451 4.7.1 <%s>: Recipient address rejected: Greylisted, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.fail_data > 0:
                self.fail_data -= 1
                return "451 4.3.0 Temporary local problem, try again"
        record = parse(envelope.content)
        record["mail_from"] = envelope.mail_from
        record["rcpt_tos"] = list(envelope.rcpt_tos)
        record["tls"] = self.tls or session.ssl is not None
        record["auth"] = session.authenticated
        with self.lock, open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if any(r.split("@", 1)[0].lower() == "lost" for r in envelope.rcpt_tos):
            # Kept, but the answer never arrives (RFC 1047's duplicate-message problem).
            server.transport.abort()
        return "250 2.0.0 Ok: queued"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--implicit", action="store_true", help="TLS from the first byte (smtps)")
    ap.add_argument("--auth", help="user:password that AUTH must give")
    ap.add_argument("--fail-data", type=int, default=0)
    args = ap.parse_args()

    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    kwargs = {"hostname": "127.0.0.1", "port": args.port, "ident": "bullhorn-test ESMTP"}
    if context is not None and args.implicit:
        kwargs["ssl_context"] = context
    elif context is not None:
        kwargs["tls_context"] = context
        kwargs["require_starttls"] = True
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            # handled=False: aiosmtpd answers 535 itself.
            return AuthResult(success=ok, handled=False)

        kwargs["authenticator"] = authenticator
        kwargs["auth_required"] = True
        # Plain-text AUTH only where there is no TLS at all (a relay on loopback).
        kwargs["auth_require_tls"] = context is not None

    handler = Handler(args.out, args.fail_data, bool(context and args.implicit))
    controller = Controller(handler, **kwargs)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
