"""The demo's mail relay: a real SMTP server (aiosmtpd) on loopback that delivers to a Maildir.

Like real relays, it is not always agreeable:
- greylisting: the first delivery from a sender to an address at a greylisting provider is
  refused with 450, and accepted when tried again;
- unconfirmed deliveries: for some recipients, a message is stored, then answered with 451 (as
  when a relay times out before confirming); the sender cannot tell, and sends it again;
- closed mailboxes: 550, for good.

It keeps one copy per Message-ID, so a message sent again after a 4xx, or after a worker died
between sending and recording it, is not delivered twice.
"""

from __future__ import annotations

import email
import mailbox
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from roadie.demo import world


class Relay:
    """The aiosmtpd handler. Its methods run one at a time, on the server's event loop."""

    def __init__(self, outbox: Path) -> None:
        self.maildir = mailbox.Maildir(outbox, create=True)
        self.delivered = {message["Message-ID"] for message in self.maildir}
        self.greylisted: set[tuple[str, str]] = set()
        self.unconfirmed: set[str] = set()
        self.counts: Counter[str] = Counter()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain == world.CLOSED:
            self.counts["refused"] += 1
            return "550 5.1.1 mailbox unavailable: no such user here"
        if domain == world.GREYLISTING and (envelope.mail_from, address) not in self.greylisted:
            self.greylisted.add((envelope.mail_from, address))
            self.counts["greylisted"] += 1
            return "450 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message_id = email.message_from_bytes(envelope.content)["Message-ID"]
        if message_id and message_id in self.delivered:
            self.counts["duplicates"] += 1  # sent again: already delivered, keep one copy
        else:
            self.maildir.add(envelope.content)
            self.delivered.add(message_id)
            self.counts["delivered"] += 1
        flaky = times_out(envelope.rcpt_tos[0])
        if flaky and message_id and message_id not in self.unconfirmed:
            self.unconfirmed.add(message_id)
            self.counts["unconfirmed"] += 1
            return "451 4.4.2 timed out before confirming delivery, try again"
        return "250 2.0.0 OK: queued"


def times_out(address: str) -> bool:
    """Whether the relay times out confirming the first delivery of a message to `address`."""
    return zlib.crc32(address.encode()) % 3 == 0


class _Server(Controller):
    def _trigger_server(self) -> None:
        # Listening on port 0 lets the system choose a free port: read which one it chose
        # before aiosmtpd's readiness check connects to it.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class RelayServer:
    """`with RelayServer(outbox) as relay:` serves SMTP on 127.0.0.1:`relay.port`."""

    def __init__(self, outbox: Path, port: int = 0) -> None:
        self.relay = Relay(outbox)
        self._server = _Server(self.relay, hostname="127.0.0.1", port=port)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def counts(self) -> Counter[str]:
        return self.relay.counts

    def __enter__(self) -> RelayServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
