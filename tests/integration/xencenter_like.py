"""A client that behaves like XenCenter when it connects to a pool (spec §10).

A small, faithful re-implementation in Python of what XenCenter (xenserver/xenadmin, the
version the spec read: HEAD b210cd2c, December 2023, whose SDK's LATEST API is 2.20) does on
the wire, so that xapi-sim can be tested against it without Windows. Sources, by concern:

* transport and response parsing -- ``XenModel/XenAPI/JsonRpcClient.cs``,
  ``XenModel/XenAPI/JsonRpc.cs`` (``JsonResponseV2``): JSON-RPC v2 only, ``POST
  <url>/jsonrpc``, incrementing integer ids, keep-alive, one TCP connection per "connection
  group"; a reply must carry ``jsonrpc`` and ``id``; an ``error`` member, if present, must not
  be null (Newtonsoft ``Required.DisallowNull``) and needs an int ``code``, a string
  ``message`` and a ``data`` array; a non-200 status is a transport failure;
* dates -- ``XenModel/XenAPI/Converters.cs`` (``XenDateTimeConverter``): ``yyyyMMddTHH:mm:ssZ``
  and ``yyyy-MM-ddTHH:mm:ssZ`` are UTC, the same without ``Z`` are *local* time;
* API versions -- ``XenModel/XenAPI/ApiVersion.cs`` (``API_Version`` enum, ``GetAPIVersion``:
  an unknown pair is ``UNKNOWN`` = 99, greater than everything);
* the connect sequence -- ``XenModel/XenAPI/Session.cs`` (``login_with_password`` retries
  with fewer parameters on ``MESSAGE_PARAMETER_COUNT_MISMATCH``; ``SetupSessionDetails``),
  ``XenModel/Network/XenConnection.cs`` (``ConnectWorkerThread``/``GetNewSession``: the API
  version check, the duplicate session on its own connection group for events, the cache
  fill, the pool and coordinator taken from it, ``SetServerTimeOffset``),
  ``XenModel/XenObjectDownloader.cs`` (``role.get_all_records`` then
  ``event.from(["*"], token, 30.0)``; events of session/event/vtpm/user/secret ignored);
* the checks once the cache is populated -- ``XenAdmin/MainWindow.cs``
  (``connection_CachePopulated``) with the thresholds of ``XenModel/Utils/Helpers.Versions.cs``;
* the heartbeat -- ``XenModel/Network/Heartbeat.cs``: ``host.get_servertime`` on its own
  connection every 15 s, two consecutive failures drop the connection;
* actions -- ``XenModel/Actions/AsyncAction.cs``: ``Async.*``, ``task.get_record`` every 0.9 s,
  the result is the text of the first ``<value>`` of ``task.result`` (the raw string if it
  is not XML), ``HANDLE_INVALID`` with ``ErrorDescription[1] == "task"`` means the task is
  over, the task is destroyed afterwards.

Intervals are parameters so tests can run them fast; the defaults are XenCenter's.

Two builds are modelled (``Build``), each from its own public source: XenCenter ``b210cd2c``
(xenserver/xenadmin, the default) and XCP-ng Center 20.04.01 (xcp-ng/xenadmin ``ac81e0a4``,
December 2020, the last public XCP-ng Center): its SDK knows API 2.16 at most, refuses only
servers older than API 2.5 (``XenConnection.ConnectWorkerThread``), accepts any product brand
(``MainWindow.SameProductBrand`` returns true), requires pool members to be Dundee or later
(``Helpers.DundeeOrGreater``: ``platform_version`` >= 2.0.0) and logs in over XML-RPC,
switching to JSON-RPC once it knows the API version (``Session.SwitchToJsonRpcBackend``: v1
for API 2.6, v2 from 2.8, XML-RPC otherwise).
"""

from __future__ import annotations

import datetime
import http.client
import json
import ssl
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
import xmlrpc.client
from dataclasses import dataclass

EVENT_FROM_TIMEOUT = 30.0  # XenObjectDownloader.EVENT_FROM_TIMEOUT
EVENT_HTTP_TIMEOUT = 120.0  # the event session's HTTP timeout (XenConnection.cs)
HEARTBEAT_INTERVAL = 15.0  # Heartbeat.cs
TASK_POLL_INTERVAL = 0.9  # AsyncAction.cs
IGNORED_EVENT_CLASSES = {"session", "event", "vtpm", "user", "secret"}

# ApiVersion.cs at b210cd2c: API_1_1 = 1 ... API_2_15 = 26, API_2_20 = 27 = LATEST, UNKNOWN = 99
_API_ORDER = [
    "1.1",
    "1.2",
    "1.3",
    "1.4",
    "1.5",
    "1.6",
    "1.7",
    "1.8",
    "1.9",
    "1.10",
    "2.0",
    "2.1",
    "2.2",
    "2.3",
    "2.4",
    "2.5",
    "2.6",
    "2.7",
    "2.8",
    "2.9",
    "2.10",
    "2.11",
    "2.12",
    "2.13",
    "2.14",
    "2.15",
    "2.20",
]
API_VERSION = {v: i + 1 for i, v in enumerate(_API_ORDER)}
API_UNKNOWN = 99
API_LATEST = API_VERSION["2.20"]
API_2_6 = API_VERSION["2.6"]  # XenServer 7.1 (ely): the oldest this XenCenter supports

# Helpers.Versions.cs: "Naples or greater" = platform_version >= 2.9.50 (Citrix Hypervisor 8.0)
NAPLES_PLATFORM_VERSION = "2.9.50"
BRAND = "XenServer"  # the XenCenter build's product brand (XenServer 8 era)
LEGACY_BRAND = "Citrix Hypervisor"  # Branding.resx legacy brand


@dataclass(frozen=True)
class Build:
    """What differs between the XenCenter builds modelled here (each from its source)."""

    name: str
    api_order: tuple  # ApiVersion.cs: the API_Version enum, 1-based; the last is LATEST
    oldest_api: str  # ConnectWorkerThread: an older server is ServerNotSupported
    brands: tuple | None  # SameProductBrand; None: any brand
    platform_min: str  # every host's platform_version (b210cd2c: NaplesOrGreater)
    members_only: bool  # the platform check covers pool members only (DundeeOrGreater(slave))
    transport: str  # "json2": JSON-RPC v2 throughout; "switch": SwitchToJsonRpcBackend
    user_agent: str

    def api_version(self, major, minor) -> int:
        """``Helper.GetAPIVersion(major, minor)``."""
        key = f"{major}.{minor}"
        return self.api_order.index(key) + 1 if key in self.api_order else API_UNKNOWN

    @property
    def latest(self) -> int:
        return len(self.api_order)

    def version_name(self, v) -> str:
        return self.api_order[v - 1] if 0 < v <= len(self.api_order) else "unknown"


XENCENTER = Build(
    name="XenCenter (xenserver/xenadmin b210cd2c)",
    api_order=tuple(_API_ORDER),
    oldest_api="2.6",
    brands=(BRAND, LEGACY_BRAND),
    platform_min=NAPLES_PLATFORM_VERSION,
    members_only=False,
    transport="json2",
    user_agent="XenCenter 8.4.0",
)
# xcp-ng/xenadmin ac81e0a4 (XCP-ng Center 20.04.01): ApiVersion.cs ... API_2_15 = 26,
# API_2_16 = 27 = LATEST; XenConnection.cs: APIVersion < API_2_5 -> ServerNotSupported;
# Program.cs: Session.UserAgent = "XenCenter/<ClientVersion>".
XCPNG_CENTER = Build(
    name="XCP-ng Center 20.04.01 (xcp-ng/xenadmin ac81e0a4)",
    api_order=(*_API_ORDER[:-1], "2.16"),
    oldest_api="2.5",
    brands=None,
    platform_min="2.0.0",
    members_only=True,
    transport="switch",
    user_agent="XenCenter/20.04.01.33",
)


def api_version(major, minor) -> int:
    """``Helper.GetAPIVersion(major, minor)`` of XenCenter b210cd2c."""
    return XENCENTER.api_version(major, minor)


def api_version_of_string(text, build=XENCENTER) -> int:
    """``Helper.GetAPIVersion(string)``: "a.b" only."""
    parts = str(text).split(".") if text is not None else []
    if len(parts) == 2 and all(p.lstrip("-").isdigit() for p in parts):
        return build.api_version(int(parts[0]), int(parts[1]))
    return API_UNKNOWN


def version_compare(a: str, b: str) -> int:
    """``Helpers.ProductVersionCompare``: dotted numbers, numerically."""
    pa = [int(x) for x in a.split(".")]
    pb = [int(x) for x in b.split(".")]
    return (pa > pb) - (pa < pb)


def parse_date(text: str):
    """``XenDateTimeConverter``: (datetime, is_utc)."""
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.UTC), True
        except ValueError:
            pass
    for fmt in ("%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.datetime.strptime(text, fmt).astimezone(), False  # local time
        except ValueError:
            pass
    raise ProtocolError(f"unparseable date {text!r}")


# -- errors ------------------------------------------------------------------------------------


class ProtocolError(Exception):
    """The reply breaks what XenCenter's parser accepts (a crash or WebException there)."""


class Failure(Exception):
    """``XenAPI.Failure``: an API error, ``ErrorDescription = [code, params...]``."""

    def __init__(self, description):
        self.description = list(description)
        super().__init__(self.description)


class ServerNotSupported(Exception):
    """``XenConnection.ServerNotSupported``: the API version is too old for this XenCenter."""


class HostIsSlave(Exception):
    """First connect to a pool member: XenCenter offers to connect to the coordinator."""

    def __init__(self, address):
        self.address = address
        super().__init__(address)


class CoordinatorMissing(Exception):
    """The cache fill lacked the pool or its coordinator (a null dereference in XenCenter)."""


# -- transport -----------------------------------------------------------------------------------


class JsonRpcClient:
    """One connection group: a keep-alive HTTP connection speaking JSON-RPC v2 (or v1,
    ``JsonRpcVersion.v1``: no ``jsonrpc`` member, ``error`` null on success)."""

    version = 2
    path = "/jsonrpc"
    content_type = "application/json"

    def __init__(self, url, user_agent, timeout, group="", version=2):
        self.version = version
        u = urllib.parse.urlsplit(url)
        self.url = url
        self.host, self.port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
        self.https = u.scheme == "https"
        self.user_agent = user_agent
        self.timeout = timeout
        self.group = group
        self.next_id = 0
        self.conn = None
        self.lock = threading.Lock()
        self.sockets = set()  # local (ip, port) of every TCP connection used

    def _connect(self):
        if self.https:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # XenCenter asks the user about the certificate
            self.conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=ctx
            )
        else:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.conn.connect()
        self.sockets.add(self.conn.sock.getsockname())

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def encode(self, method, params, rid) -> bytes:
        req = {"id": rid, "method": method, "params": list(params)}
        if self.version == 2:
            req["jsonrpc"] = "2.0"
        return json.dumps(req).encode()

    def decode(self, data, rid):
        return parse_response(data, rid) if self.version == 2 else parse_response_v1(data, rid)

    def call(self, method, *params):
        with self.lock:
            self.next_id += 1
            rid = self.next_id
            body = self.encode(method, params, rid)
            headers = {
                "Content-Type": self.content_type,
                "Accept": self.content_type,
                "User-Agent": self.user_agent,
                "Connection": "keep-alive",
            }
            for attempt in (1, 2):
                if self.conn is None:
                    self._connect()
                try:
                    self.conn.request("POST", self.path, body=body, headers=headers)
                    r = self.conn.getresponse()
                    data = r.read()
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    # a keep-alive connection the server closed: reconnect once
                    self.close()
                    if attempt == 2:
                        raise
            if r.status != 200:
                self.close()
                raise ProtocolError(f"HTTP {r.status} for {method}")
            if r.getheader("connection", "").lower() == "close":
                self.close()
        return self.decode(data, rid)


class XmlRpcClient(JsonRpcClient):
    """The same connection group speaking XML-RPC (CookComputing's ``XmlRpcProxy``, as
    XCP-ng Center before it switches): XAPI's ``Status``/``Value``/``ErrorDescription``."""

    path = "/"
    content_type = "text/xml"

    def encode(self, method, params, rid) -> bytes:
        return xmlrpc.client.dumps(tuple(params), method, allow_none=False).encode()

    def decode(self, data, rid):
        try:
            ((res,), _) = xmlrpc.client.loads(data)
        except Exception as e:  # noqa: BLE001 -- any parse failure is the client's exception
            raise ProtocolError(f"not XML-RPC: {e}") from None
        if not isinstance(res, dict) or res.get("Status") not in ("Success", "Failure"):
            raise ProtocolError(f"not a XAPI reply: {res!r}")
        if res["Status"] == "Failure":
            raise Failure(res.get("ErrorDescription") or [])
        return _plain(res.get("Value"))


def _plain(v):
    """XML-RPC ``dateTime.iso8601`` values as their text, as CookComputing hands them to
    XenCenter's date converter."""
    if isinstance(v, xmlrpc.client.DateTime):
        return v.value
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def parse_response_v1(data: bytes, rid):
    """``JsonResponseV1``: ``result``, ``error`` (null on success) and ``id``."""
    try:
        res = json.loads(data)
    except ValueError as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(res, dict) or res.get("id") != rid:
        raise ProtocolError(f"reply {res!r} for request {rid!r}")
    err = res.get("error")
    if err is not None:
        if isinstance(err, dict):
            raise Failure([err.get("message"), *(err.get("data") or [])])
        raise Failure(list(err) if isinstance(err, list) else [str(err)])
    return res.get("result")


def parse_response(data: bytes, rid):
    """``JsonRpcClient.Rpc`` + ``JsonResponseV2``: the result, or Failure; ProtocolError on a
    reply XenCenter would not accept."""
    try:
        res = json.loads(data)
    except ValueError as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(res, dict):
        raise ProtocolError("reply is not an object")
    if "jsonrpc" not in res:
        raise ProtocolError("jsonrpc member missing (Required.Always)")
    if res["jsonrpc"] != "2.0":
        raise ProtocolError(f"jsonrpc {res['jsonrpc']!r}")
    if "id" not in res:
        raise ProtocolError("id member missing")
    if res["id"] != rid:
        raise ProtocolError(f"reply id {res['id']!r} for request {rid!r}")
    if "error" in res:
        err = res["error"]
        if err is None:
            raise ProtocolError("error member is null (Required.DisallowNull)")
        if (
            not isinstance(err, dict)
            or not isinstance(err.get("code"), int)
            or isinstance(err.get("code"), bool)
            or not isinstance(err.get("message"), str)
        ):
            raise ProtocolError(f"malformed error object {err!r}")
        data_ = err.get("data")
        if not isinstance(data_, list) or not all(isinstance(x, str) for x in data_):
            raise ProtocolError(f"error data is not a string array: {data_!r}")
        raise Failure([err["message"], *data_])
    return res.get("result")


# -- the connection --------------------------------------------------------------------------------


class XenCenterLike:
    """One XenCenter connection to a server (``XenConnection``)."""

    def __init__(
        self,
        url,
        username,
        password,
        *,
        bypass_version_check=False,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        task_poll_interval=TASK_POLL_INTERVAL,
        event_from_timeout=EVENT_FROM_TIMEOUT,
        user_agent=None,
        api_version_string=None,
        build=XENCENTER,
    ):
        self.build = build
        self.url = url
        self.username = username
        self.password = password
        self.bypass_version_check = bypass_version_check
        self.heartbeat_interval = heartbeat_interval
        self.task_poll_interval = task_poll_interval
        self.event_from_timeout = event_from_timeout
        self.user_agent = user_agent or build.user_agent
        # Helper.APIVersionString(LATEST)
        self.api_version_string = api_version_string or build.api_order[-1]
        self.rpc = (XmlRpcClient, {}) if build.transport == "switch" else (JsonRpcClient, {})
        self.main = self._client("main", 24 * 3600)
        self.events_client = None
        self.heartbeat_client = None
        self.session = None
        self.api_version = API_UNKNOWN
        self.steps = []  # (step, what happened) in order
        self.cache = {}  # lower-case class -> ref -> record
        self.token = ""
        self.pool_ref = self.coordinator_ref = None
        self.server_time_offset = None
        self.server_time_is_utc = None
        self.refusals = []  # connection_CachePopulated decisions
        self.heartbeats = []  # (start, end, ok) of every heartbeat
        self.event_calls = []  # (start, end, number of events)
        self.dropped = None
        self._stop = threading.Event()
        self._threads = []

    # -- wire helpers ----------------------------------------------------------------------
    def _client(self, group, timeout):
        cls, kw = self.rpc
        return cls(self.url, self.user_agent, timeout, group, **kw)

    def switch_transport(self):
        """``Session.SwitchToJsonRpcBackend`` (XCP-ng Center): once the API version is
        known, JSON-RPC v1 for API 2.6, v2 from 2.8, XML-RPC otherwise."""
        if self.build.transport != "switch":
            return
        v = self.api_version
        if v == self.build.api_version(2, 6) or v >= self.build.api_version(2, 8):
            version = 1 if v == self.build.api_version(2, 6) else 2
            self.rpc = (JsonRpcClient, {"version": version})
            self.main.close()
            self.main = self._client("main", 24 * 3600)
            self._step("transport", f"JSON-RPC v{version}")
        else:
            self._step("transport", "XML-RPC")

    def _step(self, name, detail=None):
        self.steps.append((name, detail))

    # -- 1. login --------------------------------------------------------------------------
    def login(self):
        """``Session.login_with_password`` (4 params, then 3, then 2 on
        MESSAGE_PARAMETER_COUNT_MISMATCH); ``HOST_IS_SLAVE`` aborts at once."""
        attempts = [
            (self.username, self.password, self.api_version_string, self.user_agent),
            (self.username, self.password, self.api_version_string),
            (self.username, self.password),
        ]
        for params in attempts:
            try:
                self.session = self.main.call("session.login_with_password", *params)
                self._step("login", len(params))
                return self.session
            except Failure as f:
                if f.description[0] == "MESSAGE_PARAMETER_COUNT_MISMATCH":
                    continue
                if f.description[0] == "HOST_IS_SLAVE":
                    raise HostIsSlave(f.description[1]) from None
                raise
        raise Failure(["MESSAGE_PARAMETER_COUNT_MISMATCH"])

    # -- 2-4. session details ----------------------------------------------------------------
    def setup_session_details(self):
        pools = self.main.call("pool.get_all_records", self.session)
        self._step("pool.get_all_records", len(pools))
        if pools:
            pool = next(iter(pools.values()))
            host = self.main.call("host.get_record", self.session, pool["master"])
            self._step("host.get_record", pool["master"])
            self.api_version = self.build.api_version(
                host["API_version_major"], host["API_version_minor"]
            )
            self.switch_transport()
        superuser = self.main.call("session.get_is_local_superuser", self.session, self.session)
        self._step("session.get_is_local_superuser", superuser)
        if not superuser:
            self.subject = self.main.call("session.get_subject", self.session, self.session)
            self.user_sid = self.main.call("session.get_auth_user_sid", self.session, self.session)
            self._step("session.get_subject/get_auth_user_sid", self.user_sid)
        self.permissions = self.main.call(
            "session.get_rbac_permissions", self.session, self.session
        )
        self._step("session.get_rbac_permissions", len(self.permissions))
        self.roles = self.main.call("role.get_all_records", self.session)
        self._step("role.get_all_records", len(self.roles))

    # -- the whole connect ---------------------------------------------------------------------
    def connect(self):
        """``ConnectWorkerThread`` up to a populated cache; raises what XenCenter would."""
        self.login()
        self.setup_session_details()
        # 5. the API version check
        oldest = self.build.api_order.index(self.build.oldest_api) + 1
        if self.api_version < oldest:
            self._step(
                "version check",
                f"API {self.api_version} < {self.build.oldest_api}: server not supported",
            )
            if not self.bypass_version_check:
                raise ServerNotSupported(
                    f"API version {self.build.version_name(self.api_version)} is older than "
                    f"{self.build.oldest_api}"
                )
        else:
            self._step("version check", "ok")
        # 6. a duplicate session on its own connection group for event.from
        self.events_client = self._client("events", EVENT_HTTP_TIMEOUT)
        self._step("duplicate session", "events connection group")
        # 7. cache fill: roles, then everything from event.from on the main session
        roles = self.main.call("role.get_all_records", self.session)
        for ref, rec in roles.items():
            self.cache.setdefault("role", {})[ref] = rec
        self._events(self.main, "")
        self._step("event.from cache fill", sum(len(v) for v in self.cache.values()))
        # 8. the pool and its coordinator from that batch
        pools = self.cache.get("pool", {})
        if not pools:
            raise CoordinatorMissing("no pool in the cache fill")
        self.pool_ref, pool = next(iter(pools.items()))
        coordinator = self.cache.get("host", {}).get(pool["master"])
        if coordinator is None:
            raise CoordinatorMissing("the pool's master is not in the cache fill")
        self.coordinator_ref = pool["master"]
        self.coordinator_address = coordinator["address"]
        self._step("pool and coordinator", self.coordinator_address)
        # 9. SetServerTimeOffset
        t = self.main.call("host.get_servertime", self.session, self.coordinator_ref)
        server_time, self.server_time_is_utc = parse_date(t)
        self.server_time_offset = (
            datetime.datetime.now(datetime.UTC) - server_time
        ).total_seconds()
        self._step("host.get_servertime", t)
        # 10. connection_CachePopulated
        self.refusals = self.cache_populated_checks()
        self._step("cache populated checks", self.refusals or "ok")
        return self

    def cache_populated_checks(self):
        """``MainWindow.connection_CachePopulated``: reasons XenCenter would disconnect."""
        out = []
        hosts = self.cache.get("host", {})
        coordinator = hosts[self.coordinator_ref]
        build = self.build
        brand = coordinator["software_version"].get("product_brand")
        if build.brands is not None and brand not in build.brands:
            out.append(f"product brand {brand!r} is not {build.brands[0]!r}")
        for ref, h in hosts.items():
            if build.members_only and ref == self.coordinator_ref:
                continue
            pv = h["software_version"].get("platform_version")
            if pv is None or version_compare(pv, build.platform_min) < 0:
                what = "Dundee" if build.members_only else "Citrix Hypervisor 8.0"
                out.append(
                    f"host {h['name_label']}: platform_version {pv} < "
                    f"{build.platform_min} (older than {what})"
                )
        sv = coordinator["software_version"]
        xc_min = api_version_of_string(sv.get("xencenter_min"), build)
        xc_max = api_version_of_string(sv.get("xencenter_max"), build)
        if 0 < xc_min <= API_UNKNOWN and 0 < xc_max <= API_UNKNOWN and xc_min > build.latest:
            out.append("XenCenter out of date for this server")
        return out

    # -- events --------------------------------------------------------------------------------
    def _events(self, client, token):
        t0 = time.monotonic()
        out = client.call("event.from", self.session, ["*"], token, self.event_from_timeout)
        if not isinstance(out, dict) or set(out) != {"events", "valid_ref_counts", "token"}:
            shape = sorted(out) if isinstance(out, dict) else out
            raise ProtocolError(f"event.from result {shape}")
        self.event_calls.append((t0, time.monotonic(), len(out["events"])))
        for ev in out["events"]:
            cls = ev["class"].lower()
            if cls in IGNORED_EVENT_CLASSES:
                continue
            if ev["operation"] in ("add", "mod"):
                self.cache.setdefault(cls, {})[ev["ref"]] = ev["snapshot"]
            elif ev["operation"] == "del":
                self.cache.get(cls, {}).pop(ev["ref"], None)
        self.token = out["token"]
        return out["events"]

    def start_steady_state(self):
        """The event loop on the events connection and the heartbeat on its own."""
        self.heartbeat_client = self._client("heartbeat", max(5.0, 2 * self.heartbeat_interval))

        def event_loop():
            while not self._stop.is_set():
                try:
                    self._events(self.events_client, self.token)
                except Exception as e:  # noqa: BLE001 -- connection lost
                    if not self._stop.is_set():
                        self.dropped = f"event.from: {e!r}"
                    return

        def heartbeat():
            failures = 0
            while not self._stop.wait(self.heartbeat_interval):
                t0 = time.monotonic()
                try:
                    t = self.heartbeat_client.call(
                        "host.get_servertime", self.session, self.coordinator_ref
                    )
                    parse_date(t)
                    failures = 0
                    self.heartbeats.append((t0, time.monotonic(), True))
                except Exception:  # noqa: BLE001
                    failures += 1
                    self.heartbeats.append((t0, time.monotonic(), False))
                    if failures >= 2:
                        self.dropped = "heartbeat failed twice"
                        return

        for fn in (event_loop, heartbeat):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self._threads.append(t)

    # -- actions ----------------------------------------------------------------------------------
    def poll_task(self, task):
        """One poll of ``AsyncAction.PollToCompletion``: the record, or None when the task
        is gone (``HANDLE_INVALID`` with ``ErrorDescription[1] == "task"``)."""
        try:
            return self.main.call("task.get_record", self.session, task)
        except Failure as f:
            if f.description[0] == "HANDLE_INVALID" and f.description[1:2] == ["task"]:
                return None
            raise

    def run_async(self, method, *args):
        """An action: ``Async.<method>``, poll, parse the result, destroy the task.
        Returns (result text, the task's last record)."""
        task = self.main.call("Async." + method, self.session, *args)
        record = None
        while True:
            rec = self.poll_task(task)
            if rec is None:
                break
            record = rec
            if rec["status"] != "pending":
                break
            time.sleep(self.task_poll_interval)
        try:
            self.main.call("task.destroy", self.session, task)
        except Failure:
            pass
        if record is None:
            return None, None
        if record["status"] == "failure":
            raise Failure(record["error_info"])
        if record["status"] == "cancelled":
            raise Failure(["TASK_CANCELLED", task])
        return task_result(record["result"]), dict(record, ref=task)

    # -- teardown ---------------------------------------------------------------------------------
    def disconnect(self):
        self._stop.set()
        try:
            self.main.call("session.logout", self.session)
        except Exception:  # noqa: BLE001
            pass
        for t in self._threads:
            t.join(5)
        for c in (self.main, self.events_client, self.heartbeat_client):
            if c is not None:
                c.close()


def task_result(text):
    """``AsyncAction``: the text of the first ``<value>`` element, or the raw string."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return text
    node = root if root.tag == "value" else root.find(".//value")
    if node is None:
        return text
    return "".join(node.itertext())
