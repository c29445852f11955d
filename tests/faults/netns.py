"""Worker "hosts" in Linux network namespaces, each linked to this machine by a veth pair.

A namespace has its own network stack: its workers reach PostgreSQL only through their link
(host side 10.N.M.1, namespace side 10.N.M.2, a /30), so taking the host side of the link down
cuts that one "host" off — its TCP connections stay open and hear nothing, as in a real
partition — while every other worker carries on. The throwaway cluster (pgcluster.py) listens on
every address and trusts 10.0.0.0/8, so a namespace connects to it at 10.N.M.1.

Needs root (or CAP_NET_ADMIN) and `ip`; `unavailable()` says why not, so the test can skip.
Namespaces and links are removed by `destroy()` (deleting the namespace deletes its veth pair).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Sequence

IP = shutil.which("ip") or "/usr/sbin/ip"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, *args], check=check, capture_output=True, text=True, timeout=30)


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None if they can."""
    if not os.path.exists(IP):
        return "no `ip` command (iproute2)"
    name = f"roadie-probe-{os.getpid()}"
    made = _ip("netns", "add", name, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


class Host:
    """One namespace with its veth link; `command()` prefixes a command to run inside it."""

    def __init__(self, index: int) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100)}"
        self.name = f"roadie-{tag}-h{index}"
        self.outside = f"rv{tag}h{index}"[:15]  # interface names are at most 15 characters
        self.inside = f"{self.outside[:13]}n"
        net = random.randrange(1, 250), random.randrange(0, 64) * 4
        self.gateway = f"10.{200 + index % 50}.{net[0]}.{net[1] + 1}"  # this machine's side
        self.address = f"10.{200 + index % 50}.{net[0]}.{net[1] + 2}"  # the namespace's side
        self.created = False

    def create(self) -> Host:
        _ip("netns", "add", self.name)
        self.created = True
        _ip("link", "add", self.outside, "type", "veth", "peer", "name", self.inside)
        _ip("link", "set", self.inside, "netns", self.name)
        _ip("addr", "add", f"{self.gateway}/30", "dev", self.outside)
        _ip("link", "set", self.outside, "up")
        self._inside("addr", "add", f"{self.address}/30", "dev", self.inside)
        self._inside("link", "set", self.inside, "up")
        self._inside("link", "set", "lo", "up")
        return self

    def _inside(self, *args: str) -> None:
        _ip("-n", self.name, *args)

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace (`ip netns exec` execs it: the pid is the command's)."""
        return [IP, "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        """Take the link down: packets stop both ways, no reset, no error on either side."""
        _ip("link", "set", self.outside, "down")

    def restore(self) -> None:
        _ip("link", "set", self.outside, "up")

    def destroy(self) -> None:
        if self.created:
            _ip("netns", "del", self.name, check=False)
            _ip("link", "del", self.outside, check=False)  # gone with the namespace, normally
            self.created = False
