"""The From domain's email authentication, read from DNS: SPF, SendGrid's DKIM CNAMEs, DMARC.

Gmail and Yahoo require bulk senders to pass SPF and DKIM and to publish a DMARC policy that
the message aligns with. With SendGrid's domain authentication ("automated security") the DNS
of the From domain carries:

* ``s1._domainkey`` and ``s2._domainkey``: CNAMEs to SendGrid, which signs every message with
  DKIM ``d=<domain>`` (aligned with the From address);
* ``v=spf1 … include:sendgrid.net …``: SPF allowing SendGrid's servers, within RFC 7208's
  limit of 10 DNS-querying terms (``include``, ``a``, ``mx``, ``ptr``, ``exists``,
  ``redirect``, counted through nested includes);
* ``_dmarc``: ``v=DMARC1; p=…``. ``p=none`` only monitors (a warning); DKIM alignment needs
  the signing domain to equal the From domain (``adkim=s``) or share its organizational
  domain (``adkim=r``, the default).

Lookups use dnspython (chosen over checkdmarc: it lets ``OUTREACH_DNS_SERVER=host:port`` point
the resolver at a local server for tests, needs no other package, and makes no request beyond
the DNS queries these checks need). The organizational domain is approximated as the last two
labels (no public-suffix list): it only matters for a From address on a subdomain.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dns.exception
import dns.resolver

from outreach.checks import Area, Check, fail, ok, warn
from outreach.exceptions import ConfigError

if TYPE_CHECKING:
    from outreach.workspace import Workspace

SENDGRID_SPF = "sendgrid.net"
SPF_LOOKUP_LIMIT = 10  # RFC 7208 §4.6.4
DKIM_SELECTORS = ("s1", "s2")  # SendGrid's automated-security selectors
SPF_EXAMPLE = "v=spf1 include:sendgrid.net ~all"
_LOOKUP_TERMS = {"include", "a", "mx", "ptr", "exists"}
_DNS_ADMIN = "ask whoever manages the domain's DNS"


class DnsTrouble(Exception):
    """DNS could not be asked (timeout, server failure): the answer is unknown, not "none"."""


def make_resolver(ws: Workspace) -> dns.resolver.Resolver:
    """The system resolver, or ``OUTREACH_DNS_SERVER=host:port`` (tests: a local server)."""
    server = ws.setting("OUTREACH_DNS_SERVER")
    if not server:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise DnsTrouble("this machine has no DNS resolver configured") from None
    else:
        host, _, port = server.strip().rpartition(":")
        host = host.strip("[]")
        try:
            port_n = int(port)
            if not host or not 0 < port_n < 65536:
                raise ValueError
            try:
                ip = str(ipaddress.ip_address(host))
            except ValueError:
                ip = socket.getaddrinfo(host, port_n, proto=socket.IPPROTO_UDP)[0][4][0]
        except (ValueError, OSError):
            raise ConfigError(
                f"OUTREACH_DNS_SERVER {server!r} is not a reachable host:port",
                where="environment / .env",
                hint="leave it unset to use the system's resolver, or e.g. 127.0.0.1:5353",
            ) from None
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [ip]
        resolver.port = port_n
    resolver.timeout = 3.0
    resolver.lifetime = 6.0
    return resolver


@dataclass
class Lookup:
    """Answers from one resolver: ``None`` when the name or record does not exist."""

    resolver: dns.resolver.Resolver

    def _resolve(self, name: str, rdtype: str):
        """The answer; NXDOMAIN and NoAnswer pass through, other DNS trouble is DnsTrouble."""
        try:
            return self.resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            raise
        except dns.resolver.NoNameservers:
            raise DnsTrouble(f"the DNS server failed to answer for {name}") from None
        except dns.exception.Timeout:
            raise DnsTrouble(f"DNS did not answer in time for {name}") from None
        except dns.exception.DNSException as exc:
            raise DnsTrouble(f"DNS lookup of {name} failed ({exc})") from None

    def _answer(self, name: str, rdtype: str):
        try:
            return self._resolve(name, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None

    def exists(self, name: str) -> bool:
        """Whether the name exists at all (NXDOMAIN says it does not; no SOA record there is
        still an existing name)."""
        try:
            self._resolve(name, "SOA")
        except dns.resolver.NXDOMAIN:
            return False
        except dns.resolver.NoAnswer:
            return True
        return True

    def txt(self, name: str) -> list[str] | None:
        answer = self._answer(name, "TXT")
        if answer is None:
            return None
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]

    def cname(self, name: str) -> str | None:
        answer = self._answer(name, "CNAME")
        if answer is None:
            return None
        return str(answer[0].target).rstrip(".")


# ------------------------------------------------------------------------------------------
# SPF


@dataclass
class Spf:
    record: str
    lookups: int = 0
    includes: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    all_qualifier: str | None = None


def spf_records(lk: Lookup, domain: str) -> list[str]:
    return [t for t in (lk.txt(domain) or []) if t.lower().split(" ", 1)[0] == "v=spf1"]


def evaluate_spf(lk: Lookup, domain: str, record: str) -> Spf:
    """Count the DNS-querying terms of ``record`` through nested includes and redirects."""
    spf = Spf(record)
    _walk(lk, domain, record, spf, {domain.lower()}, top=True)
    return spf


def _walk(lk: Lookup, domain: str, record: str, spf: Spf, seen: set[str], top: bool) -> None:
    for term in record.split()[1:]:
        low = term.lower()
        qualifier = low[0] if low[0] in "+-~?" else "+"
        body = low.lstrip("+-~?")
        if body.startswith("redirect="):
            name, target = "redirect", body.split("=", 1)[1]
        else:
            name, _, target = body.partition(":")
            name = name.split("/", 1)[0]
        if name == "all":
            if top:
                spf.all_qualifier = qualifier
            continue
        if name not in _LOOKUP_TERMS and name != "redirect":
            continue
        spf.lookups += 1
        if name not in ("include", "redirect"):
            continue
        target = target.rstrip(".")
        spf.includes.add(target)
        if "%" in target or target in seen or spf.lookups > SPF_LOOKUP_LIMIT:
            continue  # macros cannot be expanded here; loops and overruns stop the walk
        seen.add(target)
        found = spf_records(lk, target)
        if not found:
            spf.problems.append(f"{name}:{target} has no SPF record (receivers: permerror)")
            continue
        _walk(lk, target, found[0], spf, seen, top=False)


def _spf_checks(lk: Lookup, domain: str, dkim_ok: bool) -> list[Check]:
    title = f"SPF of {domain}"
    records = spf_records(lk, domain)
    if not records:
        return [
            fail(
                "dns.spf",
                Area.DNS,
                title,
                f"{domain} publishes no SPF record, so receivers cannot tell who may send as it",
                f"add a TXT record at {domain}: {SPF_EXAMPLE} ({_DNS_ADMIN})",
            )
        ]
    if len(records) > 1:
        return [
            fail(
                "dns.spf",
                Area.DNS,
                title,
                f"{len(records)} SPF records; receivers treat that as an error and ignore all of them",
                "merge them into one TXT record starting with v=spf1",
                details=records,
            )
        ]
    spf = evaluate_spf(lk, domain, records[0])
    out = []
    if spf.all_qualifier == "+":
        out.append(
            warn(
                "dns.spf",
                Area.DNS,
                title,
                f"{records[0]} ends with +all: anyone may send as {domain}",
                "end the record with ~all (or -all) instead of +all",
            )
        )
    else:
        out.append(ok("dns.spf", Area.DNS, title, records[0]))
    sendgrid = SENDGRID_SPF in spf.includes
    if sendgrid:
        out.append(
            ok("dns.spf.sendgrid", Area.DNS, "SPF allows SendGrid", "include:sendgrid.net is there")
        )
    else:
        check = warn if dkim_ok else fail
        out.append(
            check(
                "dns.spf.sendgrid",
                Area.DNS,
                "SPF allows SendGrid",
                "the SPF record does not include sendgrid.net"
                + (
                    " (SendGrid's own subdomain covers SPF with automated security, but some "
                    "receivers check the From domain too)"
                    if dkim_ok
                    else ""
                ),
                f"add include:sendgrid.net before the all term of the TXT record at {domain}",
            )
        )
    lookups = f"{spf.lookups} of {SPF_LOOKUP_LIMIT} DNS lookups"
    if spf.lookups > SPF_LOOKUP_LIMIT:
        out.append(
            fail(
                "dns.spf.lookups",
                Area.DNS,
                "SPF lookup limit",
                f"{lookups}: receivers stop at 10 and then fail SPF for every message",
                "remove includes of services you no longer use, or replace them by ip4:/ip6: ranges",
                details=sorted(spf.includes),
            )
        )
    elif spf.problems:
        out.append(
            fail(
                "dns.spf.lookups",
                Area.DNS,
                "SPF lookup limit",
                f"{lookups}, but {spf.problems[0]}",
                "remove or fix the include that has no SPF record",
                details=spf.problems,
            )
        )
    else:
        out.append(ok("dns.spf.lookups", Area.DNS, "SPF lookup limit", lookups))
    return out


# ------------------------------------------------------------------------------------------
# DKIM (SendGrid's domain authentication) and DMARC


@dataclass
class Dkim:
    domain: str | None  # where the selectors were found (the signing domain d=)
    found: dict[str, str]  # selector → CNAME target (or "TXT" for a key published directly)
    missing: list[str]
    keyless: list[str]  # CNAMEs whose target answers with no DKIM key


def find_dkim(lk: Lookup, domain: str) -> Dkim:
    """SendGrid's selectors at the From domain, or else at a parent domain."""
    candidates = _parents(domain)
    best = Dkim(None, {}, list(DKIM_SELECTORS), [])
    for candidate in candidates:
        found: dict[str, str] = {}
        keyless: list[str] = []
        for sel in DKIM_SELECTORS:
            name = f"{sel}._domainkey.{candidate}"
            target = lk.cname(name)
            keys = [t for t in (lk.txt(name) or []) if "p=" in t.replace(" ", "")]
            if target:
                found[sel] = target
                if not keys:
                    keyless.append(sel)
            elif keys:
                found[sel] = "TXT"
        if found:
            missing = [s for s in DKIM_SELECTORS if s not in found]
            return Dkim(candidate, found, missing, keyless)
    return best


def _dkim_check(d: Dkim, domain: str) -> Check:
    title = "SendGrid DKIM (s1/s2._domainkey)"
    fix = (
        "in SendGrid → Settings → Sender Authentication, authenticate "
        f"{domain} and add the CNAME records it shows ({_DNS_ADMIN})"
    )
    if d.domain is None:
        return fail(
            "dns.dkim",
            Area.DNS,
            title,
            f"no s1._domainkey / s2._domainkey record for {domain}: messages are not signed "
            "for your domain",
            fix,
        )
    names = ", ".join(f"{s}._domainkey.{d.domain} → {t}" for s, t in d.found.items())
    if d.missing:
        return fail(
            "dns.dkim",
            Area.DNS,
            title,
            f"{', '.join(f'{s}._domainkey.{d.domain}' for s in d.missing)} missing ({names})",
            fix,
        )
    if d.keyless:
        return fail(
            "dns.dkim",
            Area.DNS,
            title,
            f"{', '.join(d.keyless)} point at SendGrid but no DKIM key answers there ({names})",
            "copy the CNAME values again from SendGrid → Settings → Sender Authentication",
        )
    if any(t == "TXT" for t in d.found.values()):
        return warn(
            "dns.dkim",
            Area.DNS,
            title,
            f"DKIM keys are published directly, not as CNAMEs to SendGrid ({names})",
            "make sure SendGrid signs with these keys (manual security), or switch to its CNAMEs",
        )
    return ok("dns.dkim", Area.DNS, title, names)


def parse_dmarc(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep:
            tags[k.strip().lower()] = v.strip()
    return tags


def _dmarc_checks(lk: Lookup, domain: str, dkim: Dkim) -> list[Check]:
    title = f"DMARC of {domain}"
    found_at = None
    records: list[str] = []
    for candidate in _parents(domain):
        records = [t for t in (lk.txt(f"_dmarc.{candidate}") or []) if t.startswith("v=DMARC1")]
        if records:
            found_at = candidate
            break
    if not records:
        return [
            fail(
                "dns.dmarc",
                Area.DNS,
                title,
                f"no DMARC record at _dmarc.{domain}: Gmail and Yahoo require one of bulk senders",
                f"add a TXT record at _dmarc.{domain}: v=DMARC1; p=none; rua=mailto:<a mailbox "
                f"for reports> ({_DNS_ADMIN})",
            )
        ]
    if len(records) > 1:
        return [
            fail(
                "dns.dmarc",
                Area.DNS,
                title,
                f"{len(records)} DMARC records at _dmarc.{found_at}; receivers ignore all of them",
                "keep exactly one TXT record starting with v=DMARC1",
                details=records,
            )
        ]
    tags = parse_dmarc(records[0])
    policy = tags.get("sp" if found_at != domain and "sp" in tags else "p", "").lower()
    where = f"_dmarc.{found_at}"
    out: list[Check] = []
    if policy not in ("none", "quarantine", "reject"):
        out.append(
            fail(
                "dns.dmarc",
                Area.DNS,
                title,
                f"{where} has no valid policy (p=): {records[0]}",
                "set p=none to start monitoring, then quarantine or reject",
            )
        )
    elif policy == "none":
        out.append(
            warn(
                "dns.dmarc",
                Area.DNS,
                title,
                f"{where}: p=none — receivers are told to take no action on mail that fails "
                "(accepted by Gmail and Yahoo, but it protects nobody)",
                "once the DMARC reports show only your own services, move to p=quarantine",
                details=[records[0]],
            )
        )
    else:
        out.append(ok("dns.dmarc", Area.DNS, title, f"{where}: p={policy}", details=[records[0]]))
    strict = tags.get("adkim", "r").lower() == "s"
    atitle = "DMARC alignment"
    if dkim.domain is None:
        out.append(
            fail(
                "dns.dmarc.alignment",
                Area.DNS,
                atitle,
                f"nothing signs for {domain} (no SendGrid DKIM), so messages cannot pass DMARC",
                "authenticate the domain in SendGrid (see the DKIM line above)",
            )
        )
    elif dkim.domain == domain or (not strict and domain.endswith("." + dkim.domain)):
        mode = "strict" if strict else "relaxed"
        out.append(
            ok(
                "dns.dmarc.alignment",
                Area.DNS,
                atitle,
                f"SendGrid signs with d={dkim.domain}, aligned with the From domain {domain} "
                f"(adkim {mode})",
            )
        )
    else:
        out.append(
            fail(
                "dns.dmarc.alignment",
                Area.DNS,
                atitle,
                f"SendGrid signs with d={dkim.domain}, which does not align with {domain} under "
                "adkim=s",
                f"authenticate {domain} itself in SendGrid, or set adkim=r in {where}",
            )
        )
    return out


# ------------------------------------------------------------------------------------------


def dns_checks(ws: Workspace, from_email: str) -> list[Check]:
    """SPF, DKIM and DMARC of the From address's domain, one :class:`Check` each."""
    domain = from_email.rsplit("@", 1)[-1].lower().rstrip(".")
    try:
        lk = Lookup(make_resolver(ws))
        if not lk.exists(domain):
            return [
                fail(
                    "dns.domain",
                    Area.DNS,
                    f"DNS of {domain}",
                    f"{domain} does not exist according to DNS (NXDOMAIN): no receiver can find "
                    "its SPF, DKIM or DMARC records",
                    "check the domain of sender.from_email in the campaign file; if it is right, "
                    "check the DNS server this machine uses (or OUTREACH_DNS_SERVER)",
                )
            ]
        dkim = find_dkim(lk, domain)
        dkim_check = _dkim_check(dkim, domain)
        return [
            *_spf_checks(lk, domain, dkim_check.status.value == "ok"),
            dkim_check,
            *_dmarc_checks(lk, domain, dkim),
        ]
    except DnsTrouble as exc:
        return [
            warn(
                "dns",
                Area.DNS,
                f"DNS of {domain}",
                f"could not be checked: {exc}",
                "check the network connection (or OUTREACH_DNS_SERVER) and run doctor again",
            )
        ]


def _parents(domain: str) -> list[str]:
    """The domain, then its parents down to two labels (the organizational domain, roughly)."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(0, max(1, len(labels) - 1))]
