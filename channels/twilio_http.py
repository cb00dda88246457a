"""twilio's HTTP layer on our one httpx client, so tests can fake Twilio at the wire.

It also classifies failures for `send_with_retry`: a refused connection never reached Twilio
(retry), a read timeout may have (do not retry). Unlike twilio's own clients it logs nothing:
their request log prints the `To` number.
"""

from __future__ import annotations

import httpx
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator

from channels.base import RetryableSendError, SendUncertainError, WebhookAuthError, WebhookRequest


class HttpxTwilioClient(AsyncHttpClient):  # type: ignore[misc]
    def __init__(self, client: httpx.AsyncClient, *, timeout: float = 15.0) -> None:
        super().__init__(logger=None, is_async=True, timeout=timeout)
        self._client = client

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (twilio's interface)
        allow_redirects: bool = False,
    ) -> Response:
        try:
            response = await self._client.request(
                method.upper(),
                url,
                params=params,  # type: ignore[arg-type]
                data=data,
                headers=headers,
                auth=auth,
                timeout=timeout or self.timeout,
                follow_redirects=allow_redirects,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableSendError("twilio unreachable") from exc
        except httpx.TransportError as exc:
            # Read timeout, connection dropped mid-response: Twilio may have queued it.
            raise SendUncertainError("twilio answer lost") from exc
        if response.status_code == 429 or response.status_code == 503:
            retry_after = response.headers.get("retry-after")
            raise RetryableSendError(
                f"twilio {response.status_code}",
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        return Response(response.status_code, response.text, response.headers)


def verify_twilio_signature(
    validator: RequestValidator, public_url: str, request: WebhookRequest, *, channel: str
) -> None:
    """X-Twilio-Signature against the configured public URL, never request.url: behind a proxy
    the URL a request arrives on is not the one Twilio signed. Raises WebhookAuthError."""
    signature = request.headers.get("x-twilio-signature", "")
    if not signature or not validator.validate(public_url, dict(request.form), signature):
        raise WebhookAuthError(f"channel.{channel}.signature_invalid")
