"""Any other SMS provider with an HTTP+JSON API, described by a `GenericSpec` in the config.

The spec says how to send (method, URL, whether the fields go in the query string, a form or
a JSON body, which templates fill them, extra headers), how to read the JSON answer (dotted
paths such as "data.id" or "messages.0.id" to the id, the price, an "ok" flag and an error
code), which error codes mean a dead number, a halted account or a refused text, how to poll
statuses (optional), and which fields its delivery receipts and incoming SMS carry.

Templates use {phone} (E.164, "+79161234567"), {digits} ("79161234567"), {text}, {sender},
{login}, {password} and {message_id} (ours, for idempotency keys); the status URL uses {id}
or {ids} (comma-separated), {login} and {password}. Values put into URLs are percent-encoded.

How answers map: an error code listed in `halt_codes` halts the channel, in
`unreachable_codes` the address is dead, in `refused_codes` this message is refused. Then
HTTP 429 is transient (Retry-After binds), 5xx transient, 401 and 402 halt (credentials, money).
Otherwise the answer is OK when `ok_path` holds one of `ok_values` (or, without `ok_path`, when
the status is 2xx and no error code is given); any other answer is `Permanent` for this message
when the status is 4xx and `Transient` otherwise. The provider's callbacks are not signed: only
the secret in the webhook's URL admits them.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote

import aiohttp

from gateway.channels import Halted, Outgoing, Permanent, SendResult, Sent, Transient
from gateway.channels.sms import (
    DELIVERED,
    FAILED,
    PENDING,
    Callback,
    CallbackError,
    CallbackRequest,
    HttpProvider,
    Inbound,
    Receipt,
    SmsAccount,
    decimal_or_none,
    digits,
    e164,
    message_id,
    network_failure,
    plain,
    retry_after,
    screened,
    shorten,
)

log = logging.getLogger("autoloyal.sms.generic")

SEND_NAMES = frozenset({"phone", "digits", "text", "sender", "login", "password", "message_id"})
"""Placeholders the send URL, fields and headers may use."""
STATUS_NAMES = frozenset({"id", "ids", "login", "password"})
"""Placeholders the status URL and headers may use."""
_METHODS = ("GET", "POST")
_MAX_FIELDS = 1000
"""Fields read from a raw body, as many as aiohttp reads from a form."""
_SEND_AS = ("query", "form", "json")


@dataclass(frozen=True, slots=True)
class GenericSpec:
    """How to talk to one provider. Lists may come as any iterable (TOML arrays) and codes
    and values as numbers: they are kept as tuples of strings, compared case-insensitively.
    Each error names its field, for the config to show as `sms.generic.<field>: ...`."""

    url: str
    """Where to send: an absolute http(s) URL, or a path under the account's base_url."""
    fields: Mapping[str, str]
    """Field name -> template: what the request carries."""
    method: str = "POST"
    send_as: str = "form"
    """"query" (GET or POST), "form" or "json" (POST): where the fields go."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers, templated ("Authorization": "Bearer {password}"); polls send them too,
    with the placeholders about the message ({phone}, {text}...) left empty."""
    title: str = "SMS provider"
    """The provider's name in errors and alerts."""

    id_path: str = "id"
    cost_path: str | None = None
    ok_path: str | None = None
    ok_values: tuple[str, ...] = ()
    error_path: str | None = None
    unreachable_codes: tuple[str, ...] = ()
    halt_codes: tuple[str, ...] = ()
    refused_codes: tuple[str, ...] = ()

    status_url: str | None = None
    """A GET URL (or path) with {id} (one call per message) or {ids} (one call for many)."""
    status_items_path: str | None = None
    """With {ids}: where the list of answers is ("" or None: the answer is the list)."""
    status_id_path: str = "id"
    status_path: str = "status"
    reason_path: str | None = None
    delivered_values: tuple[str, ...] = ()
    failed_values: tuple[str, ...] = ()
    """Status words, for polls and callbacks alike; any other word is still pending."""

    callback_id_field: str = "id"
    callback_status_field: str = "status"
    callback_reason_field: str | None = None
    inbound_phone_field: str | None = None
    inbound_text_field: str | None = None
    callback_reply: str = "OK"
    """Callback fields are looked up in the query, the form, then a JSON body (dotted paths)."""

    def __post_init__(self) -> None:
        method, send_as = str(self.method).upper(), str(self.send_as).lower()
        if method not in _METHODS:
            raise ValueError(f"method: must be GET or POST, not {self.method!r}")
        if send_as not in _SEND_AS:
            raise ValueError(f"send_as: must be query, form or json, not {self.send_as!r}")
        if method == "GET" and send_as != "query":
            raise ValueError(f"send_as: a GET request carries its fields in the query: {send_as}")
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "send_as", send_as)
        _check_url("url", self.url)
        _check_template("url", self.url, SEND_NAMES)
        object.__setattr__(self, "fields", _strings("fields", self.fields))
        object.__setattr__(self, "headers", _strings("headers", self.headers))
        if not self.fields:
            raise ValueError("fields: name at least the fields that carry the number and the text")
        for name, template in self.fields.items():
            if not name:
                raise ValueError("fields: a field needs a name")
            _check_template(f"fields.{name}", template, SEND_NAMES)
        for name, template in self.headers.items():
            _check_template(f"headers.{name}", template, SEND_NAMES)
        used = _placeholders([self.url, *self.fields.values()])
        if "text" not in used:
            raise ValueError("fields: no field carries the text ({text})")
        if not used & {"phone", "digits"}:
            raise ValueError("fields: no field carries the number ({phone} or {digits})")

        for name in ("id_path", "status_id_path", "status_path"):
            _check_path(name, getattr(self, name), required=True)
        for name in ("cost_path", "ok_path", "error_path", "reason_path", "status_items_path"):
            _check_path(name, getattr(self, name), required=False)
        for name in (
            "ok_values",
            "unreachable_codes",
            "halt_codes",
            "refused_codes",
            "delivered_values",
            "failed_values",
        ):
            object.__setattr__(self, name, _words(name, getattr(self, name)))
        if self.ok_path and not self.ok_values:
            raise ValueError("ok_values: ok_path needs the values that mean the provider took it")
        if self.ok_values and not self.ok_path:
            raise ValueError("ok_path: ok_values need the path to read them at")
        codes = {
            "unreachable_codes": self.unreachable_codes,
            "halt_codes": self.halt_codes,
            "refused_codes": self.refused_codes,
        }
        if any(codes.values()) and not self.error_path:
            raise ValueError("error_path: error codes need the path to read them at")
        _disjoint(codes)

        if self.status_url is not None:
            _check_url("status_url", self.status_url)
            _check_template("status_url", self.status_url, STATUS_NAMES)
            used = _placeholders([self.status_url])
            if len(used & {"id", "ids"}) != 1:
                raise ValueError("status_url: use either {id} (one message) or {ids} (many)")
            if not self.delivered_values:
                raise ValueError("delivered_values: the status poll needs the delivered words")
            if self.status_items_path and "ids" not in used:
                raise ValueError("status_items_path: only a batch poll ({ids}) has a list")
        elif self.status_items_path:
            raise ValueError("status_items_path: there is no status_url")
        _disjoint({"delivered_values": self.delivered_values, "failed_values": self.failed_values})
        for name in ("callback_id_field", "callback_status_field", "callback_reply"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}: must not be empty")
        if (self.inbound_phone_field is None) != (self.inbound_text_field is None):
            raise ValueError("inbound_text_field: incoming SMS need both the phone and text fields")


class GenericSms(HttpProvider):
    """Sends through any provider a `GenericSpec` describes."""

    name = "sms"
    provider = "generic"

    def __init__(self, account: SmsAccount, spec: GenericSpec) -> None:
        relative = [url for url in (spec.url, spec.status_url) if url and url.startswith("/")]
        if relative and not account.base_url:
            raise ValueError(f"base_url: {relative[0]} is a path, so the account needs a base_url")
        super().__init__(account, account.base_url or _origin(spec.url))
        self.spec = spec
        self.can_poll = spec.status_url is not None

    def _url(self, template: str, values: Mapping[str, str]) -> str:
        url = template.format_map({key: quote(value, safe=",") for key, value in values.items()})
        return url if url.startswith(("http://", "https://")) else self.destination + url

    def _headers(self, values: Mapping[str, str]) -> dict[str, str]:
        return {name: value.format_map(values) for name, value in self.spec.headers.items()}

    async def send(self, message: Outgoing) -> SendResult:
        title = self.spec.title
        number = digits(message.address)
        if not 10 <= len(number) <= 15:
            return Permanent(f"{title}: not a phone number: {message.address!r}")
        values = {
            "phone": "+" + number,
            "digits": number,
            "text": message.content["text"],
            "sender": self.account.sender,
            "login": self.account.login,
            "password": self.account.password,
            "message_id": str(message.message_id),
        }
        fields = {name: template.format_map(values) for name, template in self.spec.fields.items()}
        request: dict[str, Any] = {"headers": self._headers(values)}
        if self.spec.send_as == "query":
            request["params"] = fields
        elif self.spec.send_as == "form":
            request["data"] = fields
        else:
            request["json"] = fields
        url = self._url(self.spec.url, values)
        try:
            async with self._http().request(self.spec.method, url, **request) as response:
                status, headers = response.status, response.headers
                body = (await response.read()).decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return network_failure(title, exc, self.account.timeout)
        return self._outcome(status, headers, body)

    def _outcome(self, status: int, headers: Mapping[str, str], body: str) -> SendResult:
        spec, title = self.spec, self.spec.title
        answer = _json(body)
        found = _dig(answer, spec.error_path) if spec.error_path else None
        code = _word(found)
        said = f"code {_text(found).strip()}" if code else shorten(body)
        if code and code in spec.halt_codes:
            return Halted(
                f"{title}: the account cannot send ({said}): check its balance, credentials "
                "and sender name"
            )
        if code and code in spec.unreachable_codes:
            return Permanent(f"{title}: the number cannot be reached ({said})", unreachable=True)
        if code and code in spec.refused_codes:
            return Permanent(f"{title}: the message is refused ({said})", unreachable=False)
        if status == 429:
            return Transient(f"{title}: too many requests (HTTP 429)", retry_after(headers))
        if status >= 500:
            return Transient(f"{title}: HTTP {status}: {shorten(body)}")
        if status == 401:
            return Halted(f"{title}: the credentials are refused (HTTP 401): check the account")
        if status == 402:
            return Halted(f"{title}: payment required (HTTP 402): top up the account")
        if spec.ok_path:
            ok = 200 <= status < 300 and _word(_dig(answer, spec.ok_path)) in spec.ok_values
        else:
            ok = 200 <= status < 300 and answer is not None and not code
        if ok:
            provider_id = _dig(answer, spec.id_path)
            if provider_id is None or provider_id == "" or isinstance(provider_id, dict | list):
                return Transient(f"{title}: accepted without an id at {spec.id_path}: {said}")
            cost = decimal_or_none(_dig(answer, spec.cost_path)) if spec.cost_path else None
            return Sent(_text(provider_id), cost, self.provider)
        if 400 <= status < 500:
            return Permanent(f"{title}: HTTP {status}: {said}", unreachable=False)
        return Transient(f"{title}: unexpected answer (HTTP {status}): {said}")

    async def statuses(self, provider_ids: Sequence[str]) -> list[Receipt]:
        """Polls the status URL: once for all ids with {ids}, once per id with {id}; ids the
        provider does not report are left out. Raises RuntimeError when it cannot ask."""
        spec = self.spec
        if spec.status_url is None or not provider_ids:
            return []
        base = {key: "" for key in SEND_NAMES} | {
            "sender": self.account.sender,
            "login": self.account.login,
            "password": self.account.password,
        }
        if "ids" in _placeholders([spec.status_url]):
            answer = await self._poll(base | {"ids": ",".join(provider_ids), "id": ""})
            items = _dig(answer, spec.status_items_path) if spec.status_items_path else answer
            if not isinstance(items, list):
                raise RuntimeError(f"{spec.title}: no list of statuses in the answer")
            wanted = set(provider_ids)
            found = (self._polled(item, None) for item in items if isinstance(item, dict))
            return [receipt for receipt in found if receipt and receipt.provider_id in wanted]
        receipts: list[Receipt] = []
        for provider_id in provider_ids:
            try:
                answer = await self._poll(base | {"id": provider_id, "ids": provider_id})
            except RuntimeError:
                if not receipts:
                    raise
                log.warning("%s: stopped polling after %d statuses", spec.title, len(receipts))
                return receipts
            receipt = self._polled(answer, provider_id) if isinstance(answer, dict) else None
            if receipt is not None:
                receipts.append(receipt)
        return receipts

    async def _poll(self, values: Mapping[str, str]) -> Any:
        assert self.spec.status_url is not None
        url = self._url(self.spec.status_url, values)
        try:
            async with self._http().get(url, headers=self._headers(values)) as response:
                status = response.status
                body = (await response.read()).decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = network_failure(self.spec.title, exc, self.account.timeout)
            raise RuntimeError(problem.error) from exc
        answer = _json(body)
        if not 200 <= status < 300 or answer is None:
            raise RuntimeError(f"{self.spec.title}: status poll: HTTP {status}: {shorten(body)}")
        return answer

    def _polled(self, item: Mapping[str, Any], provider_id: str | None) -> Receipt | None:
        spec = self.spec
        found = _dig(item, spec.status_id_path)
        if found is not None and found != "":
            provider_id = _text(found)
        word = _dig(item, spec.status_path)
        if provider_id is None or word is None:
            return None
        reason = _dig(item, spec.reason_path) if spec.reason_path else None
        return self._receipt(provider_id, _word(word), reason)

    def _receipt(self, provider_id: str, word: str, reason: object) -> Receipt:
        if word in self.spec.delivered_values:
            return Receipt(provider_id, DELIVERED)
        if word in self.spec.failed_values:
            said = _text(reason) if reason not in (None, "") else None
            return Receipt(provider_id, FAILED, said)
        return Receipt(provider_id, PENDING)

    def callback(self, request: CallbackRequest) -> Callback:
        spec = self.spec
        lookup = _callback_fields(request, spec.title)
        reply = spec.callback_reply
        if spec.inbound_phone_field and spec.inbound_text_field:
            phone, text = lookup(spec.inbound_phone_field), lookup(spec.inbound_text_field)
            if phone is not None and text is not None:
                sender = e164(_scalar(phone, spec.title))
                if sender is None:
                    raise CallbackError(f"{spec.title}: an incoming SMS without a valid phone")
                inbound = Inbound(sender, plain(_scalar(text, spec.title)))
                return Callback(inbound=[inbound], reply=reply)
        provider_id, word = lookup(spec.callback_id_field), lookup(spec.callback_status_field)
        if provider_id in (None, "") or word in (None, ""):
            raise CallbackError(f"{spec.title}: neither a delivery receipt nor an incoming SMS")
        reason = lookup(spec.callback_reason_field) if spec.callback_reason_field else None
        receipt = self._receipt(
            message_id(_scalar(provider_id, spec.title), spec.title),
            _word(_scalar(word, spec.title)),
            None if reason is None else _scalar(reason, spec.title),
        )
        return screened(Callback(receipts=[receipt], reply=reply))

    def signed(self, request: CallbackRequest) -> bool:
        return False


def _callback_fields(request: CallbackRequest, title: str) -> Callable[[str], Any]:
    """A lookup over the call's query, form and JSON body (dotted paths into the JSON)."""
    flat: dict[str, str] = dict(request.query)
    form = list(request.form)
    content_type = next(
        (value for key, value in request.headers.items() if key.lower() == "content-type"), ""
    )
    body = request.body.strip()
    data: Any = None
    if body.startswith((b"{", b"[")) or "json" in content_type:
        data = _json(_utf8(body, title))
        if data is None:
            raise CallbackError(f"{title}: a body that is not JSON")
    elif not form and body:
        text = _utf8(body, title)
        try:
            form = parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
        except ValueError:
            raise CallbackError(f"{title}: a body of more than {_MAX_FIELDS} fields") from None
    flat |= dict(form)

    def lookup(name: str) -> Any:
        if name in flat:
            return flat[name]
        return _dig(data, name) if data is not None else None

    return lookup


def _utf8(body: bytes, title: str) -> str:
    """A raw body as text: JSON is UTF-8, and so is a form that names no charset."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise CallbackError(f"{title}: a body that is not UTF-8") from None


def _dig(value: Any, path: str | None) -> Any:
    """The value at a dotted path ("data.id", "messages.0.id"); None when absent."""
    if not path:
        return value
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _text(value: object) -> str:
    """A JSON value as the provider would write it: true, 17, "abc" (17.0 is 17; a number
    too big to write out, Infinity or NaN stays as Python writes it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, Decimal | float) and _whole(value):
        return str(int(value))
    return str(value)


def _whole(value: Decimal | float) -> bool:
    """A finite whole number of at most 30 digits (1E+999999999 is whole, and int() of it
    would take minutes)."""
    number = value if isinstance(value, Decimal) else Decimal(value)
    return number.is_finite() and number == number.to_integral_value() and number.adjusted() < 30


def _scalar(value: object, title: str) -> str:
    """A callback field's value as text; CallbackError for an object or a list."""
    if isinstance(value, dict | list):
        raise CallbackError(f"{title}: a field holds {type(value).__name__}, not a value")
    return _text(value)


def _word(value: object) -> str:
    """A code or status for comparing: its text, stripped, in lower case; "" when absent."""
    return "" if value is None else _text(value).strip().casefold()


def _json(body: str) -> Any:
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        return None


def _origin(url: str) -> str:
    """ "https://api.example.com/v1/send?x={password}" -> "https://api.example.com"."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0]}" if rest else ""


# Checks for GenericSpec.__post_init__.


def _check_url(name: str, url: object) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "/")):
        raise ValueError(f"{name}: must be an http(s) URL or a path starting with /, not {url!r}")


def _check_template(name: str, template: object, allowed: frozenset[str]) -> None:
    if not isinstance(template, str):
        raise ValueError(f"{name}: must be text, not {template!r}")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc} in {template!r} (write {{{{ for a brace)") from None
    for _literal, placeholder, spec, conversion in parts:
        if placeholder is None:
            continue
        if placeholder not in allowed:
            known = ", ".join(f"{{{known}}}" for known in sorted(allowed))
            raise ValueError(f"{name}: unknown placeholder {{{placeholder}}}; use {known}")
        if spec or conversion:
            raise ValueError(f"{name}: {{{placeholder}}} takes no format or conversion")


def _placeholders(templates: Iterable[str]) -> set[str]:
    return {
        placeholder
        for template in templates
        for _literal, placeholder, _spec, _conversion in string.Formatter().parse(template)
        if placeholder
    }


def _check_path(name: str, path: object, *, required: bool) -> None:
    if path is None and not required:
        return
    if not isinstance(path, str) or (required and not path):
        raise ValueError(f"{name}: must be a dotted path such as data.id")
    if path and any(part == "" for part in path.split(".")):
        raise ValueError(f"{name}: {path!r} has an empty step")


def _strings(name: str, mapping: object) -> dict[str, str]:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{name}: must be a table of name = template")
    out: dict[str, str] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"{name}.{key}: must be text, not {value!r}")
        out[key] = value
    return out


def _words(name: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValueError(f"{name}: must be a list, not {values!r}")
    words = tuple(_word(value) for value in values)
    if any(not word for word in words):
        raise ValueError(f"{name}: has an empty value")
    return words


def _disjoint(groups: Mapping[str, tuple[str, ...]]) -> None:
    seen: dict[str, str] = {}
    for name, words in groups.items():
        for word in words:
            if word in seen and seen[word] != name:
                raise ValueError(f"{name}: {word!r} is in {seen[word]} too")
            seen[word] = name
