"""The campaign's own endpoints, asked over https the way mail providers and SendGrid will:

* ``GET <unsubscribe.url>/test`` answers 2xx with a valid certificate (the footer link);
* ``POST <unsubscribe.url>/test`` with ``List-Unsubscribe=One-Click`` answers 2xx *without a
  redirect*, as RFC 8058 requires of one-click unsubscribe (Gmail and Yahoo send this POST);
* ``GET <server>/healthz`` answers (the server that also receives the Event Webhook).

``test`` is the server's inert token: these requests never unsubscribe anyone. Certificates
are verified against the system's CAs (``SSL_CERT_FILE`` is honoured, as tests use it).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from outreach import __version__
from outreach.checks import Area, Check, fail, ok

if TYPE_CHECKING:
    from outreach.campaign import Campaign

TIMEOUT = 10.0
TEST_TOKEN = "test"
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kw):  # a 3xx is reported, not followed
        return None


@dataclass
class Answer:
    status: int | None  # None: no HTTP answer
    problem: str | None = None  # why there was none (in words)
    location: str | None = None


def ask(
    url: str, *, method: str = "GET", body: bytes | None = None, timeout: float = TIMEOUT
) -> Answer:
    """One request, redirects not followed; network and TLS failures in words."""
    opener = urllib.request.build_opener(
        _NoRedirect, urllib.request.HTTPSHandler(context=ssl.create_default_context())
    )
    headers = {"User-Agent": f"outreach-doctor/{__version__}"}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with opener.open(req, timeout=timeout) as resp:
            resp.read(65536)
            return Answer(resp.status)
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, location=exc.headers.get("Location"))
    except urllib.error.URLError as exc:
        return Answer(None, _why(exc.reason))
    except TimeoutError:
        return Answer(None, "no answer in time")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, _why(exc))


def _why(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not valid ({reason.verify_message or reason})"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed ({reason.reason or reason})"
    if isinstance(reason, socket.gaierror):
        return "its name does not resolve in DNS"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused (nothing listens there)"
    if isinstance(reason, TimeoutError):
        return "no answer in time"
    return str(reason) or type(reason).__name__


def endpoint_checks(campaign: Campaign, timeout: float = TIMEOUT) -> list[Check]:
    """The unsubscribe page, the one-click POST and /healthz of the campaign's server."""
    unsub = campaign.spec.unsubscribe.url
    base = campaign.server_url
    if not unsub or not base:
        return []  # content_checks.unsubscribe_ready says so
    deploy = f"deploy `outreach events serve` behind https at {base} (README: Tracking and reports)"
    page = f"{unsub}/{TEST_TOKEN}"
    first = ask(page, timeout=timeout)
    title = "Unsubscribe page"
    if first.status is None:
        return [
            fail(
                "endpoints.unsubscribe",
                Area.ENDPOINTS,
                title,
                f"{page} cannot be reached: {first.problem}",
                deploy,
            )
        ]
    out = []
    if 200 <= first.status < 300:
        out.append(
            ok(
                "endpoints.unsubscribe",
                Area.ENDPOINTS,
                title,
                f"{page} answers {first.status} over https",
            )
        )
    else:
        out.append(
            fail(
                "endpoints.unsubscribe",
                Area.ENDPOINTS,
                title,
                f"{page} answers {first.status}"
                + (f" (a redirect to {first.location})" if first.location else ""),
                f"serve {unsub} with `outreach events serve` (its path must be the campaign's "
                "unsubscribe path)",
            )
        )
    post = ask(page, method="POST", body=ONE_CLICK_BODY, timeout=timeout)
    title = "One-click unsubscribe (RFC 8058)"
    if post.status is not None and 200 <= post.status < 300:
        out.append(
            ok(
                "endpoints.one_click",
                Area.ENDPOINTS,
                title,
                f"POST {page} answers {post.status}, no redirect",
            )
        )
    elif post.status is not None and 300 <= post.status < 400:
        out.append(
            fail(
                "endpoints.one_click",
                Area.ENDPOINTS,
                title,
                f"POST {page} answers {post.status}, a redirect"
                + (f" to {post.location}" if post.location else "")
                + ": mail providers treat that as a failed unsubscribe",
                "answer the POST directly with 200 (outreach events serve does; check the proxy "
                "in front of it)",
            )
        )
    else:
        out.append(
            fail(
                "endpoints.one_click",
                Area.ENDPOINTS,
                title,
                f"POST {page}: {post.problem or f'answers {post.status}'}",
                "let POST requests through to outreach events serve (check the proxy in front)",
            )
        )
    health = ask(f"{base}/healthz", timeout=timeout)
    title = "Server health"
    if health.status == 200:
        out.append(ok("endpoints.health", Area.ENDPOINTS, title, f"{base}/healthz answers 200"))
    else:
        out.append(
            fail(
                "endpoints.health",
                Area.ENDPOINTS,
                title,
                f"{base}/healthz: {health.problem or f'answers {health.status}'}",
                f"check that `outreach events serve` runs at {base} (it also receives the Event "
                "Webhook)",
            )
        )
    return out
