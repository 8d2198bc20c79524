"""A local DNS server (dnslib) that answers from a dict of zones, for the doctor's DNS checks.

It behaves like a recursive resolver for the names it knows: a query for a name that has a
CNAME gets the CNAME and, for another type, the target's records too; unknown names answer
NXDOMAIN. ``good_zone(domain)`` and ``broken_zone(domain)`` are the two test setups.

In a test::

    with FakeDNS(good_zone("escr-net.org")) as dns:
        monkeypatch.setenv("OUTREACH_DNS_SERVER", dns.address)   # "127.0.0.1:PORT"

As a process (manual runs): ``python tests/dns_fake.py --zone good --domain escr-net.org``
prints ``PORT n`` and serves until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from typing import Any

from dnslib import CNAME, QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer

Zone = dict[str, list[tuple[str, str]]]  # name → [(type, value)]

SENDGRID_USER = "u4242"
DKIM_KEY = "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC7fake+key+for+tests+only"


def sendgrid_records() -> Zone:
    """What SendGrid's own names answer (the targets of the domain-authentication CNAMEs)."""
    return {
        "sendgrid.net": [("TXT", "v=spf1 ip4:167.89.0.0/17 ip4:149.72.0.0/16 ~all")],
        f"s1.domainkey.{SENDGRID_USER}.wl.sendgrid.net": [("TXT", DKIM_KEY)],
        f"s2.domainkey.{SENDGRID_USER}.wl.sendgrid.net": [("TXT", DKIM_KEY)],
        f"{SENDGRID_USER}.wl.sendgrid.net": [("TXT", "v=spf1 include:sendgrid.net ~all")],
    }


def good_zone(domain: str) -> Zone:
    """SPF with SendGrid (3 lookups), SendGrid's DKIM CNAMEs, DMARC p=quarantine."""
    return sendgrid_records() | {
        domain: [
            ("TXT", "google-site-verification=abc123"),
            ("TXT", "v=spf1 mx include:_spf.mailhost.test include:sendgrid.net ~all"),
        ],
        "_spf.mailhost.test": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
        f"s1._domainkey.{domain}": [("CNAME", f"s1.domainkey.{SENDGRID_USER}.wl.sendgrid.net")],
        f"s2._domainkey.{domain}": [("CNAME", f"s2.domainkey.{SENDGRID_USER}.wl.sendgrid.net")],
        f"em1234.{domain}": [("CNAME", f"{SENDGRID_USER}.wl.sendgrid.net")],
        f"_dmarc.{domain}": [("TXT", f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{domain}")],
    }


def broken_zone(domain: str) -> Zone:
    """SPF without SendGrid and over 10 lookups, no s2 DKIM CNAME, DMARC p=none."""
    chain = [f"_spf{i}.mailhost.test" for i in range(8)]
    return sendgrid_records() | {
        domain: [("TXT", "v=spf1 a mx ptr " + " ".join(f"include:{c}" for c in chain) + " ~all")],
        **{c: [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")] for c in chain},
        f"s1._domainkey.{domain}": [("CNAME", f"s1.domainkey.{SENDGRID_USER}.wl.sendgrid.net")],
        f"_dmarc.{domain}": [("TXT", "v=DMARC1; p=none")],
    }


ZONES = {"good": good_zone, "broken": broken_zone}


class _ZoneResolver(BaseResolver):
    def __init__(self, zone: Zone) -> None:
        self.zone = {k.lower().rstrip("."): v for k, v in zone.items()}
        self.servfail = False  # True: answer every query with SERVFAIL (a broken server)

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        if self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        name, hops = qname, 0
        while hops < 8:
            records = self.zone.get(name)
            if records is None:
                if name == qname:
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply
            cname = next((v for t, v in records if t == "CNAME"), None)
            if cname is not None and qtype != "CNAME":
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(cname), ttl=60))
                name, hops = cname.lower().rstrip("."), hops + 1
                continue
            for rtype, value in records:
                if rtype != qtype:
                    continue
                rdata = CNAME(value) if rtype == "CNAME" else TXT(_chunks(value))
                reply.add_answer(RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=60))
            return reply
        return reply


def _chunks(text: str) -> list[bytes]:
    """A TXT value as ≤ 255-byte character strings, as DNS carries long records."""
    data = text.encode()
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


class FakeDNS:
    """The server on 127.0.0.1 (UDP) in a thread; ``zone`` can be replaced while it runs."""

    def __init__(self, zone: Zone, port: int = 0) -> None:
        self.resolver = _ZoneResolver(zone)
        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self.server = DNSServer(self.resolver, address="127.0.0.1", port=port, logger=quiet)

    @property
    def zone(self) -> Zone:
        return self.resolver.zone

    @zone.setter
    def zone(self, zone: Zone) -> None:
        self.resolver.zone = {k.lower().rstrip("."): v for k, v in zone.items()}

    @property
    def port(self) -> int:
        return self.server.server.server_address[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeDNS:
        self.server.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.server.server.server_close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zone", choices=sorted(ZONES), default="good")
    ap.add_argument("--domain", default="escr-net.org")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    with FakeDNS(ZONES[args.zone](args.domain), args.port) as fake:
        print(f"PORT {fake.port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
