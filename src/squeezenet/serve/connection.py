"""HTTP connections: a deadline for a request's headers.

uvicorn times out idle keep-alive connections, but not a client that connects and then
sends its request line and headers slowly, or never finishes them (slowloris): each such
connection is held open for as long as the client likes. The protocol class here arms a
timer whenever the connection waits for a new request (on connect, and after each
response) and cancels it once the request's headers are parsed; when it fires, a client
that sent part of a request gets ``408`` and the connection is closed, an idle one is
simply closed. The body has its own deadline (``read_timeout_s``, in :mod:`.app`).
"""

from __future__ import annotations

import json


def header_timeout_protocol(base: type, timeout_s: float) -> type:
    """A subclass of uvicorn's HTTP protocol class ``base`` (httptools or h11) that closes
    a connection whose request headers have not all arrived ``timeout_s`` after it
    started waiting for them."""

    class HeaderDeadline(base):
        header_timeout_s = timeout_s

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_timer = None
            self._bytes_waiting = 0
            self._arm()

        def data_received(self, data: bytes) -> None:
            waiting_cycle = self.cycle
            self._bytes_waiting += len(data)
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not waiting_cycle:
                self._disarm()  # a new request's headers are in: the body has its own deadline

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # keep-alive: the next request's headers get the same deadline

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._bytes_waiting = 0
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if getattr(self, "_header_timer", None) is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self._bytes_waiting:
                body = json.dumps({"error": f"the request headers did not arrive within "
                                            f"{self.header_timeout_s:g} s"}).encode()
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                     b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            self.transport.close()

    HeaderDeadline.__name__ = HeaderDeadline.__qualname__ = f"HeaderDeadline{base.__name__}"
    return HeaderDeadline


def http_protocol(timeout_s: float) -> type:
    """uvicorn's fastest available HTTP protocol class with the header deadline."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return header_timeout_protocol(AutoHTTPProtocol, timeout_s)
