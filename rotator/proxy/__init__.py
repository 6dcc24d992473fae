"""`rotator proxy`: a local reverse proxy that holds the API key for its consumers.

Consumers call the proxy and send no key; it adds ``Authorization: Bearer <key>``
and forwards over pooled keep-alive connections.  A request the API refuses with
401 during a reset is held and replayed once with the new key (`engine`), so a
single-app reset costs consumers delay, not failed calls.

Modules: `config` (the plan's ``[proxy]`` section, no network), `engine` (hold
and replay), `upstream` (the API client), `server` (the listener), `channel`
(where rotator hands over a new key), `metrics`, `command` (`rotator proxy PLAN`).
Only `config` is light enough for the plan loader; the rest import aiohttp.
"""
