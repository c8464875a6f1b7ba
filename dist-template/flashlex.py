"""FlashLex for Python thing applications: the old SDK's ``FlashlexSDK``, standard library only.

This file comes in every distribution zip the FlashLex hub makes, beside ``config.yml``. Put it
next to your application (or keep it where it is and run your application from this folder) and
use it the way the old ``flashlex-iot-python`` SDK was used::

    from flashlex import FlashlexSDK

    sdk = FlashlexSDK("config.yml")                 # or FlashlexSDK(config_dict), or FlashlexSDK()
    status_code = sdk.collectMessage({"foo": "bar"})  # egress: 200 when the hub stored it
    for message in sdk.getSubscribedMessages():       # ingress the agent stored
        print(message["message"]["payload"])
        sdk.removeMessageFromStore(message)

Where it goes:

* ``flashlex serve`` running: everything goes through its local socket, ``DATA/flashlex.sock``
  (an HTTP endpoint on a Unix socket, owner-only), so the agent's one MQTT session and its
  database stay its own.
* ``serve`` stopped: messages are read, acknowledged and removed in the message database itself
  (``DATA/<db.subscriptionData>``, SQLite in WAL mode, the schema in the FlashLex README), and
  ``collectMessage`` runs ``flashlex collect --json`` (the thing's token is an RS256 signature,
  which the standard library cannot make), found beside this folder, in it, or on PATH.

Paths: the data directory is ``data/`` beside the config file, as the agent's ``-d`` default.
The keys directory (passed to ``flashlex collect`` as ``-k``) is ``keys/`` beside the config file
when the private key named in the config is there (the hub's zip), else the config file's own
directory when the key is there (the guide's layout), else ``keys/`` if it exists. Both can be
given (``data=``, ``keys=``), and a config dict may carry the old SDK's
``flashlex.app.db.dataPath`` and ``flashlex.thing.keys.path`` (in a config *file* they are
ignored, as ``flashlex serve`` ignores them); a config given as a dict has its defaults beside
this file. Reading messages never needs the keys.

The config is read by a small reader for the simple YAML the guide's config.yml is written in
(nested ``key: value`` mappings, comments, quoted or plain scalars), as YAML 1.2 like the agent;
a file beyond that is read with PyYAML when the system has it (``python3-yaml``), else refused
naming the line.

Errors are ``FlashlexError`` exceptions: one line naming what is wrong and where (the agent's own
message when the agent found it), with ``kind`` and ``exit_code`` as the ``flashlex`` command
reports them (65 bad data, 74 I/O, 75 try later, 77 permission, 78 configuration, ...).

Python 3.7 or later. MIT licensed, as FlashLex and the SDK it replaces are.
"""

import base64
import datetime
import errno
import http.client
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse

__all__ = ["FlashlexSDK", "FlashlexError", "CollectResult", "load_config"]

#: the socket `flashlex serve` listens on, inside the data directory
SOCKET_NAME = "flashlex.sock"

#: the kinds the agent gives its failures, by exit code (`flashlex --help` lists them)
KIND_OF_EXIT_CODE = {
    64: "usage",
    65: "data",
    69: "unavailable",
    70: "bug",
    74: "io",
    75: "try-later",
    77: "permission",
    78: "config",
}
EXIT_CODE_OF_KIND = dict((kind, code) for code, kind in KIND_OF_EXIT_CODE.items())
EXIT_CODE_OF_KIND.update({"full": 74, "read-only": 74, "damaged": 74})

#: collectMessage's number when the agent queued the message (202 Accepted: `serve` delivers it
#: later) and when it could neither deliver nor queue it (503: try again later)
STATUS_QUEUED = 202
STATUS_TRY_LATER = 503

_MAX_CONFIG_BYTES = 1024 * 1024
_SUBSCRIPTION_DATA = re.compile(r"^(?!\.\.?$)[^/\x00]+$")
_SURROGATE = re.compile("[\ud800-\udfff]")
_INGRESS_COLUMNS = ("id", "topic", "payload", "qos", "retain", "received_at", "acked_at", "packet_id")


class FlashlexError(Exception):
    """A failure, in one line that names what is wrong and where.

    ``kind`` is the agent's name for it (``config``, ``data``, ``try-later``, ``io``,
    ``permission``, ``unavailable``, ``usage``, ``bug``, ...) and ``exit_code`` the exit code
    the ``flashlex`` command gives it.
    """

    def __init__(self, message, kind="bug", exit_code=None):
        super(FlashlexError, self).__init__(message)
        self.message = message
        self.kind = kind
        self.exit_code = exit_code if exit_code is not None else EXIT_CODE_OF_KIND.get(kind, 70)


class CollectResult(object):
    """What became of one egress message.

    ``outcome``: ``sent`` (the hub stored it), ``rejected`` (the hub refused it for good; the
    agent keeps it as rejected, see ``flashlex outbox list``) or ``queued`` (not delivered yet:
    it waits in the agent's outbox and ``flashlex serve`` delivers it). ``message_id`` is the id
    the hub stores it under (its ``flmessagespk``); ``status`` and ``body`` are the API's HTTP
    answer when there was one; ``error`` says why it was not sent; ``via`` is ``serve`` (the
    running agent's socket) or ``binary`` (``flashlex collect``).
    """

    __slots__ = ("message_id", "outcome", "status", "body", "error", "via")

    def __init__(self, message_id, outcome, status=None, body=None, error=None, via=None):
        self.message_id = message_id
        self.outcome = outcome
        self.status = status
        self.body = body
        self.error = error
        self.via = via

    @property
    def status_code(self):
        """The old SDK's answer: the API's HTTP status (200 stored, 4xx refused), 202 when queued."""
        if self.outcome == "queued":
            return STATUS_QUEUED
        if self.status is not None:
            return self.status
        return 200 if self.outcome == "sent" else 400

    def as_dict(self):
        return dict((name, getattr(self, name)) for name in self.__slots__)

    def __repr__(self):
        return "CollectResult(%s)" % ", ".join("%s=%r" % (k, v) for k, v in self.as_dict().items() if v is not None)


# ------------------------------------------------------------------------------------------
# The configuration


def load_config(path):
    """Reads a thing's config.yml into a dict.

    The small reader below reads the simple YAML config.yml is written in, as YAML 1.2 (the
    agent's reading); a file beyond it is read with PyYAML (``yaml.safe_load``) when the system
    has it. Raises FlashlexError (kind ``config``) naming the file, and the line when it is the YAML.
    """
    path = os.path.abspath(os.fspath(path))
    try:
        if not os.path.isfile(path):
            if os.path.exists(path):
                raise FlashlexError("%s: not a regular file" % path, "config")
            # the agent's words (shared/path-exists.ts notThereNote)
            missing = "there is no such file" if os.path.lexists(os.path.dirname(path)) else "there is no directory %s" % os.path.dirname(path)
            raise FlashlexError("%s: cannot read the configuration file: %s (ENOENT)" % (path, missing), "config")
        size = os.path.getsize(path)
        if size > _MAX_CONFIG_BYTES:
            raise FlashlexError("%s: %d bytes is too large for a configuration file (at most %d)" % (path, size, _MAX_CONFIG_BYTES), "config")
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise FlashlexError("%s: cannot read the configuration file (%s)" % (path, _errno_name(err)), "config") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FlashlexError("%s: not valid UTF-8 text" % path, "config") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    # The simple reader first: it reads YAML 1.2 as the agent does (`yes`, `on` stay text; PyYAML
    # reads YAML 1.1 and makes them booleans). PyYAML reads what the simple reader does not.
    try:
        return _SimpleYaml(path, text).parse()
    except _BeyondSimpleYaml as beyond:
        try:
            import yaml  # the system's PyYAML (python3-yaml), when there is one
        except ImportError:
            raise FlashlexError(str(beyond), "config") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = "%s:%d:%d" % (path, mark.line + 1, mark.column + 1) if mark is not None else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise FlashlexError("%s: invalid YAML: %s" % (where, problem), "config") from None


class _BeyondSimpleYaml(Exception):
    """Valid YAML, perhaps, but more than the simple reader reads."""


class _SimpleYaml(object):
    """The YAML the guide's config.yml is written in, and no more.

    Block mappings nested by indentation (spaces), ``key: value`` with plain, 'single' or
    "double" quoted scalars, ``#`` comments, blank lines, an optional leading ``---``. Plain
    scalars are typed as YAML 1.2's core schema types them (the agent's YAML library does the
    same): null, true/false, integers, floats, else text. Sequences, flow collections, anchors,
    tags, block scalars and multi-line scalars are refused with the line number: install
    python3-yaml to read those.
    """

    _INT = re.compile(r"^[-+]?[0-9]+$")
    _OCT = re.compile(r"^0o[0-7]+$")
    _HEX = re.compile(r"^0x[0-9a-fA-F]+$")
    _FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")

    def __init__(self, path, text):
        self.path = path
        self.lines = text.splitlines()

    def fail(self, number, what):
        raise FlashlexError("%s:%d: %s" % (self.path, number, what), "config")

    def unsupported(self, number, what):
        raise _BeyondSimpleYaml("%s:%d: %s: flashlex.py reads only simple YAML without PyYAML (install python3-yaml to read this)" % (self.path, number, what))

    def parse(self):
        root = {}
        # (indent of the mapping's keys, the mapping); the root's keys are at column 0
        stack = [(0, root)]
        pending = None  # (number, indent, dict) of a `key:` with nothing after it
        started = False
        for number, raw in enumerate(self.lines, 1):
            line = self.strip_comment(raw, number).rstrip()
            if not line.strip():
                continue
            if not started and line.strip() == "---":
                started = True
                continue
            started = True
            body = line.lstrip(" ")
            indent = len(line) - len(body)
            if body.startswith("\t"):
                self.fail(number, "invalid YAML: a tab in the indentation (YAML indents with spaces)")
            if pending is not None:
                if indent > pending[1]:
                    stack.append((indent, pending[2]))
                pending = None
            while stack and indent < stack[-1][0]:
                stack.pop()
            if not stack or indent != stack[-1][0]:
                self.fail(number, "invalid YAML: bad indentation of a mapping entry")
            mapping = stack[-1][1]
            if body.startswith(("- ", "? ")) or body == "-" or body in ("---", "..."):
                self.unsupported(number, "a sequence, complex key or second document")
            key, rest = self.split_key(body, number)
            if key in mapping:
                self.fail(number, "invalid YAML: map keys must be unique (%s)" % key)
            if rest == "":
                child = {}
                mapping[key] = child
                pending = (number, indent, child)
            else:
                mapping[key] = self.scalar(rest, number)
        # a `key:` with nothing under it is null, as in YAML
        self.nulls(root)
        return root

    def nulls(self, mapping):
        for key, value in list(mapping.items()):
            if isinstance(value, dict):
                if value:
                    self.nulls(value)
                else:
                    mapping[key] = None

    def strip_comment(self, raw, number):
        """The line without its comment: a `#` at the start or after a space, outside quotes."""
        quote = None
        i = 0
        while i < len(raw):
            char = raw[i]
            if quote:
                if char == "\\" and quote == '"':
                    i += 1
                elif char == quote:
                    quote = None
            elif char in "'\"" and (i == 0 or raw[i - 1] in " :"):
                quote = char
            elif char == "#" and (i == 0 or raw[i - 1] in " \t"):
                return raw[:i]
            i += 1
        return raw

    def split_key(self, body, number):
        if body[0] in "'\"":
            end = self.closing_quote(body, number)
            key = self.quoted(body[:end + 1], number)
            after = body[end + 1:]
            if not after.startswith(":"):
                self.fail(number, "invalid YAML: expected ':' after the key")
            rest = after[1:]
        else:
            match = re.search(r":(\s|$)", body)
            if not match:
                self.unsupported(number, "a line that is not `key: value`")
            key = body[:match.start()]
            if key[0] in "[{&*!|>%@`":
                self.unsupported(number, "a flow collection, anchor, alias or tag")
            rest = body[match.start() + 1:]
        if rest and not rest[0].isspace():
            self.fail(number, "invalid YAML: expected a space after ':'")
        return key, rest.strip()

    def closing_quote(self, text, number):
        quote = text[0]
        i = 1
        while i < len(text):
            if quote == '"' and text[i] == "\\":
                i += 2
                continue
            if text[i] == quote:
                if quote == "'" and text[i + 1:i + 2] == "'":
                    i += 2
                    continue
                return i
            i += 1
        self.unsupported(number, "a quoted scalar that does not end on its line")

    def quoted(self, text, number):
        if text[0] == "'":
            return text[1:-1].replace("''", "'")
        try:
            return json.loads(text)
        except ValueError:
            self.unsupported(number, "a double-quoted escape JSON does not know")

    def scalar(self, text, number):
        if text[0] in "'\"":
            end = self.closing_quote(text, number)
            if text[end + 1:].strip():
                self.fail(number, "invalid YAML: text after a quoted scalar")
            return self.quoted(text[:end + 1], number)
        if text[0] in "[{&*!|>%@`":
            self.unsupported(number, "a flow collection, anchor, alias, tag or block scalar")
        if re.search(r":(\s|$)", text):
            self.unsupported(number, "a nested mapping on one line")
        if text in ("~", "null", "Null", "NULL"):
            return None
        if text in ("true", "True", "TRUE"):
            return True
        if text in ("false", "False", "FALSE"):
            return False
        if self._INT.match(text):
            return int(text, 10)
        if self._OCT.match(text):
            return int(text[2:], 8)
        if self._HEX.match(text):
            return int(text[2:], 16)
        if self._FLOAT.match(text):
            return float(text)
        lowered = text.lower()
        if lowered in (".inf", "+.inf"):
            return float("inf")
        if lowered == "-.inf":
            return float("-inf")
        if lowered == ".nan":
            return float("nan")
        return text


def _get(mapping, path):
    """The value at a dotted key path, or None when a part is missing."""
    node = mapping
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _errno_name(err):
    return errno.errorcode.get(getattr(err, "errno", None) or 0, type(err).__name__)


# ------------------------------------------------------------------------------------------
# The running agent's socket


class _NotRunning(Exception):
    """No serve answers on the socket: use the database (and the binary) instead."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        http.client.HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


# How long the running serve has to answer its status before it counts as busy or stopped (the
# agent's own commands wait as long): serve's thread may itself wait SQLite's 5 s busy_timeout for
# an application's write lock, so a shorter window would call a waiting serve stopped.
_PROBE_SECONDS = 6


# The calls that only read: asked again when serve goes away under them (a restart).
_READS = ("/v1/messages/list", "/v1/outbox/list")
# How many times one read is asked again after the running serve went away under it.
_RESUMES = 3


def _call_serve(socket_path, method, path, body, timeout, resumes=_RESUMES):
    """Calls the running serve; raises _NotRunning when none listens (no socket, or a dead one's).

    A serve that listens but does not answer its status within 6 s (stopped with SIGSTOP, its
    event loop held) is ``try-later``, as for the agent's commands, before the call is made: the
    call itself may take ``timeout`` seconds (a long list, a collect's delivery). A serve that
    goes away under the call (a restart: an update, ``systemctl restart``) does not fail a read,
    which is asked again of the next serve (or, _NotRunning, the caller's database), up to
    ``resumes`` times; a change it may have made is ``try-later`` saying so, never asked twice.
    """
    if path != "/v1/status":
        try:
            _request_serve(socket_path, "GET", "/v1/status", None, _PROBE_SECONDS)
        except socket.timeout:
            raise FlashlexError(
                "%s: the flashlex serve running there did not answer within %s s (busy, or stopped); try again" % (socket_path, _PROBE_SECONDS),
                "try-later",
            ) from None
        except (OSError, http.client.HTTPException) as err:
            raise FlashlexError("%s: the running serve did not answer (%s)" % (socket_path, err or type(err).__name__), "unavailable") from None
    try:
        return _request_serve(socket_path, method, path, body, timeout)
    except (OSError, http.client.HTTPException) as err:
        # It answered its status, then not this: it stopped, was killed or hung meanwhile. For a
        # collect the outcome is unknown (serve may have queued it): try-later (75), as the
        # agent's `collect` says it, since unavailable (69) means "queued".
        lost = "%s: the running serve did not answer (%s)" % (socket_path, err or type(err).__name__)
        if path in _READS and resumes > 0 and not isinstance(err, socket.timeout):
            return _call_serve(socket_path, method, path, body, timeout, resumes - 1)
        if path in _READS:
            raise FlashlexError(lost, "unavailable") from None
        if path != "/v1/collect":
            raise FlashlexError(lost + ": it went away with the request, which may have been done; list to see", "try-later") from None
        raise FlashlexError(lost + "; the message may or may not be queued: see `flashlex outbox list` before sending it again", "try-later") from None


def _request_serve(socket_path, method, path, body, timeout):
    """One request on serve's socket: its result, or FlashlexError for a refusal; raises
    _NotRunning when nothing listens, and the transport's OSError/HTTPException (socket.timeout
    included) once connected."""
    if not os.path.exists(socket_path):
        raise _NotRunning()
    connection = _UnixHTTPConnection(socket_path, timeout)
    try:
        try:
            connection.connect()
        except (FileNotFoundError, ConnectionRefusedError):
            raise _NotRunning() from None  # a socket file left by a serve that was killed
        except PermissionError:
            raise FlashlexError("%s: permission denied (the socket belongs to the user flashlex serve runs as)" % socket_path, "permission") from None
        except OSError as err:
            raise FlashlexError("%s: cannot connect to the running serve (%s)" % (socket_path, err), "io") from None
        # Connected: from here a failure is reported, never retried another way (a collect that
        # reached serve may have been queued; sending it again would store it twice).
        payload = None if body is None else json.dumps(body).encode("utf-8")
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read().decode("utf-8")
    finally:
        connection.close()
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise FlashlexError("%s: the running serve answered something that is not its JSON envelope" % socket_path, "bug")
    if not answer.get("ok"):
        kind = answer.get("kind")
        code = answer.get("exitCode")
        if kind not in EXIT_CODE_OF_KIND:
            kind = KIND_OF_EXIT_CODE.get(code, "bug")
        raise FlashlexError(answer.get("error") or "the running serve refused the request", kind, code)
    return answer.get("result")


# ------------------------------------------------------------------------------------------
# The message database, when serve is not running


def _database_error(path, err):
    text = str(err)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return FlashlexError("%s: the database is busy (%s); try again" % (path, text), "try-later")
    if "readonly" in lowered or "read-only" in lowered:
        return FlashlexError("%s: read-only (%s)" % (path, text), "read-only")
    if "full" in lowered:
        return FlashlexError("%s: the file system is full (%s)" % (path, text), "full")
    if "not a database" in lowered or "malformed" in lowered:
        return FlashlexError("%s: damaged or not a SQLite database (%s)" % (path, text), "damaged")
    if "unable to open" in lowered and not os.access(path, os.R_OK | os.W_OK):
        return FlashlexError("%s: permission denied" % path, "permission")
    return FlashlexError("%s: %s" % (path, text), "io")


class _Database(object):
    """The agent's message database, opened for one operation (never created here)."""

    def __init__(self, path):
        self.path = path
        self.connection = None

    def __enter__(self):
        # The armv7 build's WebAssembly SQLite locks with a `<db>.lock` directory, not with the
        # POSIX locks SQLite uses here: while it exists another process may have the file open
        # (or was killed holding it; the next `flashlex` command clears that), so do not touch it.
        if os.path.isdir(self.path + ".lock"):
            raise FlashlexError(
                "%s: held by another flashlex process (%s.lock exists); try again, or run `flashlex messages list` once to clear a lock left by a killed one" % (self.path, self.path),
                "try-later",
            )
        try:
            uri = "file:%s?mode=rw" % urllib.parse.quote(self.path)
            self.connection = sqlite3.connect(uri, uri=True, timeout=5, isolation_level=None)
            columns = [row[1] for row in self.connection.execute("PRAGMA table_info(ingress_messages)")]
        except sqlite3.Error as err:
            self.close()
            raise _database_error(self.path, err) from None
        missing = [c for c in _INGRESS_COLUMNS if c not in columns]
        if missing:
            self.close()
            raise FlashlexError("%s: not a FlashLex message database (ingress_messages lacks %s)" % (self.path, ", ".join(missing)), "config")
        return self.connection

    def __exit__(self, kind, value, trace):
        self.close()
        if isinstance(value, sqlite3.Error):
            raise _database_error(self.path, value) from None
        return False

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _local_datetime(timestamp):
    """``YYYY-MM-DD HH:MM:SS`` in local time, or None for a time the platform cannot show (a row
    another program wrote with a time past year 9999): one odd row must not stop the listing."""
    if timestamp is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):
        return None


def _message(id, topic, payload, qos, retain, received_at, acked_at, packet_id):
    """One stored ingress message in the old SDK's shape (its PersistentCallbackHandler's)."""
    timestamp = received_at / 1000.0 if isinstance(received_at, (int, float)) else None
    return {
        "pk": id,
        "timestamp": timestamp,
        "datetime": _local_datetime(timestamp),
        "message": {
            "topic": topic,
            "payload": _payload(payload),
            "pos": qos,
            "retain": int(bool(retain)),
            "mid": packet_id,
        },
        "acked": acked_at / 1000.0 if isinstance(acked_at, (int, float)) else None,
    }


def _payload(payload):
    """JSON payloads parsed (as the old SDK did), other text as text, binary as bytes."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        raw = bytes(payload)
        try:
            payload = raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    try:
        return json.loads(payload)
    except ValueError:
        return payload


def _message_id(message):
    """The id in a message from getSubscribedMessages (its `pk`), or an id given as a number."""
    if isinstance(message, dict):
        if "pk" not in message:
            raise KeyError("pk key is required")
        value = message["pk"]
    else:
        value = message
    if isinstance(value, str) and re.match(r"^[1-9][0-9]*$", value):
        value = int(value)
    # as `flashlex messages ack` says it (64): an id is a whole number SQLite and JSON both hold
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > MAX_MESSAGE_ID:
        raise FlashlexError("not a message id: %r (ids are whole numbers from 1 to %d)" % (value, MAX_MESSAGE_ID), "usage")
    return value


# The largest message id: 2**53 - 1, what JSON numbers (and the agent) hold exactly.
MAX_MESSAGE_ID = 9007199254740991


def _directory_setting(value, what, kind="usage"):
    """A directory path given as ``data=``/``keys=`` (``kind`` usage) or in the config (config):
    str or os.PathLike, else FlashlexError of that kind naming ``what``."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise FlashlexError("%s must be a directory path, not %r" % (what, value), kind)
    return os.path.abspath(os.fspath(value))


# ------------------------------------------------------------------------------------------
# The SDK


class FlashlexSDK(object):
    """A thing application's way to FlashLex: the old flashlex-iot-python SDK's methods.

    ``config``: the path of the thing's config.yml, or the config as a dict (what the old SDK
    took), or None: ``config.yml`` in the current directory, else beside this file (the
    distribution folder). ``data``, ``keys``: the data and keys directories (defaults: see the
    module's docstring). ``binary``: the ``flashlex`` executable used for ``collectMessage``
    while serve is stopped (default: beside the distribution folder, in it, or on PATH).
    ``timeout``: seconds to wait for one collect (the agent bounds its own attempt too).

    Raises FlashlexError (kind ``config``) when the config cannot be read.
    """

    def __init__(self, config=None, data=None, keys=None, binary=None, timeout=180):
        self._data = _directory_setting(data, "data") if data is not None else None
        self._keys = _directory_setting(keys, "keys") if keys is not None else None
        self._binary = os.fspath(binary) if binary is not None else None
        self._timeout = timeout
        self._file = None
        self._file_config = None  # the file's content as read, to tell whether the dict changed
        if config is None:
            config = self._find_config()
        if isinstance(config, dict):
            self._config = config
        elif isinstance(config, (str, bytes, os.PathLike)):
            self._file = os.path.abspath(os.fsdecode(config))
            self._config = self.loadConfig(self._file)
            self._file_config = json.dumps(self._config, sort_keys=True, default=str)
        else:
            raise FlashlexError("FlashlexSDK(config): a config.yml path or a dict, not %s" % type(config).__name__, "usage")
        self._check(self._config)

    # -- the old SDK's configuration methods

    def getConfig(self):
        """The configuration dict (the same object: changes to it are seen)."""
        return self._config

    def setConfig(self, config):
        """Replaces the configuration (a dict); paths are worked out again from it."""
        if not isinstance(config, dict):
            raise FlashlexError("setConfig(config): a dict, not %s" % type(config).__name__, "usage")
        self._check(config)
        self._config = config

    def loadConfig(self, configFile):
        """Reads a config.yml into a dict (see load_config); raises FlashlexError naming the file."""
        config = load_config(configFile)
        if not isinstance(config, dict) or not isinstance(config.get("flashlex"), dict):
            raise FlashlexError("%s: flashlex: missing (expected object)" % os.path.abspath(os.fspath(configFile)), "config")
        return config

    # -- where things are

    @property
    def config_file(self):
        """The config file's absolute path, or None for a config given as a dict."""
        return self._file

    def _old_sdk_path(self, key):
        """The old SDK's path setting ``key`` (``flashlex.app.db.dataPath``, ``flashlex.thing.keys.path``)
        of a config given as a dict, as the old SDK's applications set them; None for a config
        file, whose such keys the agent ignores too (serve warns ``config.unknown_key``), so that
        this SDK and ``flashlex serve`` never look at two different directories."""
        if self._file is not None:
            return None
        value = _get(self._config, key)
        return None if value is None else _directory_setting(value, key, "config")

    @property
    def data_dir(self):
        if self._data:
            return self._data
        return self._old_sdk_path("flashlex.app.db.dataPath") or os.path.join(self._base_dir(), "data")

    def _check_data(self, existing):
        """A data directory given (``data=``, or ``db.dataPath``) that is a file, or under a
        directory that is not there, is a typo: refused (usage, 64) as the agent's ``-d`` is,
        rather than answered with "no messages". ``existing`` (reading and changing messages):
        a missing last level too, as nothing can be in a directory serve never made."""
        if not self._data and self._old_sdk_path("flashlex.app.db.dataPath") is None:
            return
        path = self.data_dir
        advice = "pass the data directory serve uses (by default data/ beside the config)"
        if os.path.exists(path) and not os.path.isdir(path):
            raise FlashlexError("data %s: not a directory; %s" % (path, advice), "usage")
        if not os.path.exists(path):
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                raise FlashlexError("data %s: no such directory, nor %s; %s" % (path, parent, advice), "usage")
            if existing:
                raise FlashlexError("data %s: no such directory (serve makes its data directory when it first runs); %s" % (path, advice), "usage")

    @property
    def keys_dir(self):
        if self._keys:
            return self._keys
        explicit = self._old_sdk_path("flashlex.thing.keys.path")
        if explicit is not None:
            return explicit
        base = self._base_dir()
        nested = os.path.join(base, "keys")
        private_key = _get(self._config, "flashlex.thing.keys.privateKey")
        if isinstance(private_key, str) and private_key:
            if os.path.isfile(os.path.join(nested, private_key)):
                return nested
            if os.path.isfile(os.path.join(base, private_key)):
                return base
        return nested if os.path.isdir(nested) else base

    @property
    def database_file(self):
        """DATA/<db.subscriptionData>, a `.json` name (the old pickleDB file) read as `.db`."""
        name = _get(self._config, "flashlex.app.db.subscriptionData")
        if name is None:
            name = "subscription.json"
        if name.endswith(".json"):
            name = name[: -len(".json")] + ".db"
        return os.path.join(self.data_dir, name)

    @property
    def socket_path(self):
        return os.path.join(self.data_dir, SOCKET_NAME)

    def serveIsRunning(self):
        """True when a `flashlex serve` answers on this data directory's socket."""
        try:
            _call_serve(self.socket_path, "GET", "/v1/status", None, 2)
            return True
        except (_NotRunning, FlashlexError):
            return False

    # -- ingress: what the hub sent, as the agent stored it

    def getSubscribedMessages(self, count=-1, sortMessages=True, reverse=False, state="unacked", topic=None):
        """The stored ingress messages, as the old SDK returned them.

        Each is ``{"pk": id, "timestamp": seconds, "datetime": "YYYY-MM-DD HH:MM:SS" (local),
        "message": {"topic", "payload" (parsed JSON; other text as str, binary as bytes),
        "pos" (QoS), "retain", "mid" (MQTT packet id)}, "acked": seconds or None}``.
        Sorted by time, oldest first (``reverse``: newest first), at most ``count`` when it is
        above 0; ``count`` 0 or below returns them all, as the old SDK did (its code:
        ``if(count>0): return messages_all[:count] else: return messages_all``).
        ``state``: ``unacked`` (default: what the application has not handled yet), ``acked``
        or ``all``; ``topic``: only that topic. Nothing stored yet: ``[]``. An argument of the
        wrong type or value raises FlashlexError (kind ``usage``), serve running or not.
        """
        if state not in ("unacked", "acked", "all"):
            raise FlashlexError("state must be unacked, acked or all, not %r" % (state,), "usage")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise FlashlexError("count must be a whole number (0 or below: all), not %r" % (count,), "usage")
        if topic is not None and not isinstance(topic, str):
            raise FlashlexError("topic must be a string, not %r" % (topic,), "usage")
        query = {"state": state}
        if topic is not None:
            query["topic"] = topic
        self._check_data(existing=True)
        try:
            rows = _call_serve(self.socket_path, "POST", "/v1/messages/list", query, 30)
            messages = [
                _message(
                    row.get("id"),
                    row.get("topic"),
                    row["payload"] if "payload" in row else base64.b64decode(row.get("payloadBase64") or ""),
                    row.get("qos"),
                    row.get("retain"),
                    row.get("received_at"),
                    row.get("acked_at"),
                    row.get("packet_id"),
                )
                for row in rows
            ]
        except _NotRunning:
            messages = self._list_from_database(state, topic)
        if sortMessages:
            messages.sort(key=lambda m: (m["timestamp"] if m["timestamp"] is not None else 0, m["pk"]), reverse=reverse)
        elif reverse:
            messages.reverse()
        return messages[:count] if count is not None and count > 0 else messages

    def removeMessageFromStore(self, message):
        """Deletes one stored message (a dict from getSubscribedMessages, or its id).

        Returns True when it was there, False when it was already gone. A dict without ``pk``
        raises KeyError('pk key is required'), as the old SDK did.
        """
        return self._change("delete", _message_id(message))

    def acknowledgeMessage(self, message):
        """Marks one message handled (`flashlex messages ack`): it leaves the default list, and
        the agent deletes it once older than ``db.expireSeconds``. True when it exists."""
        return self._change("ack", _message_id(message))

    def setMessageToStore(self, message):
        """Not supported: the agent (`flashlex serve`) stores ingress messages itself."""
        raise FlashlexError("setMessageToStore: flashlex serve stores the messages it receives; an application only reads, acknowledges and removes them", "usage")

    # -- egress: send a document to the hub

    def collectMessage(self, message):
        """Sends one JSON-serialisable document to the hub's collect API; returns the HTTP status.

        As the old SDK: 200 when the hub stored it, the API's 4xx when it refused it. And: 202
        when it could not be delivered now and waits in the agent's outbox (serve delivers it),
        503 when it could be neither delivered nor queued (offlinePublishQueueing; try later), or
        when the running serve stopped answering in the middle of it (then it may be queued:
        `flashlex outbox list` tells).
        Everything else (a broken config or key, a document that is not JSON or too large)
        raises FlashlexError with the agent's message. ``collect()`` says more.
        """
        try:
            return self.collect(message).status_code
        except FlashlexError as err:
            if err.kind == "try-later":
                return STATUS_TRY_LATER
            raise

    def collect(self, message, via="http"):
        """Sends one document to the hub: through the running serve, else `flashlex collect`.

        ``via``: ``http`` (the collect API, default) or ``mqtt`` (the egress topic). Returns a
        CollectResult. Raises FlashlexError: ``data`` (not JSON-serialisable, too large or too
        deep: nothing queued), ``try-later`` (neither delivered nor queued; or serve stopped
        answering in the middle, and it may be queued: the message says so), ``config`` (the
        config, the keys, no flashlex binary), ``unavailable`` (`flashlex collect` did not finish
        in time).
        """
        if via not in ("http", "mqtt"):
            raise FlashlexError("via must be http or mqtt, not %r" % (via,), "usage")
        self._check_data(existing=False)
        try:
            body = json.dumps(message, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as err:
            raise FlashlexError("the message is not a JSON document (%s); nothing was queued" % err, "data") from None
        # A str may hold a lone surrogate ("\ud800"), which has no UTF-8 form: JSON writes it as
        # the escape \ud800 (RFC 8259 section 7 allows it), as the agent's own JSON.stringify and
        # the TypeScript SDK do, so the same text reaches the agent whether it goes through
        # serve's socket or `flashlex collect`'s stdin (which must be UTF-8).
        body = _SURROGATE.sub(lambda found: "\\u%04x" % ord(found.group()), body)
        try:
            result = _call_serve(self.socket_path, "POST", "/v1/collect", {"body": body, "via": via}, self._timeout)
            return self._result(result, "serve")
        except _NotRunning:
            return self._collect_with_binary(body, via)

    # -- internals

    def _check(self, config):
        name = _get(config, "flashlex.app.db.subscriptionData")
        if name is not None and not (isinstance(name, str) and _SUBSCRIPTION_DATA.match(name)):
            raise FlashlexError("%s: flashlex.app.db.subscriptionData: a file name, without a directory" % (self._file or "config"), "config")

    def _find_config(self):
        here = os.path.dirname(os.path.abspath(__file__))
        tried = []
        for folder in (os.getcwd(), here):
            candidate = os.path.join(folder, "config.yml")
            if candidate not in tried:
                tried.append(candidate)
            if os.path.isfile(candidate):
                return candidate
        raise FlashlexError("no config given and none found (looked for %s); pass FlashlexSDK('path/to/config.yml')" % " and ".join(tried), "config")

    def _base_dir(self):
        """The folder defaults are beside: the config file's, or this module's for a dict."""
        return os.path.dirname(self._file) if self._file else os.path.dirname(os.path.abspath(__file__))

    def _list_from_database(self, state, topic):
        path = self.database_file
        if not os.path.exists(path):
            return []
        where, params = [], []
        if state == "unacked":
            where.append("acked_at IS NULL")
        elif state == "acked":
            where.append("acked_at IS NOT NULL")
        if topic is not None:
            where.append("topic = ?")
            params.append(topic)
        sql = "SELECT %s FROM ingress_messages %s ORDER BY id" % (", ".join(_INGRESS_COLUMNS), "WHERE " + " AND ".join(where) if where else "")
        with _Database(path) as db:
            return [_message(*row) for row in db.execute(sql, params)]

    def _change(self, action, message_id):
        self._check_data(existing=True)
        try:
            done = _call_serve(self.socket_path, "POST", "/v1/messages/%s" % action, {"ids": [message_id]}, 30)
            return message_id in done
        except _NotRunning:
            pass
        path = self.database_file
        if not os.path.exists(path):
            return False
        with _Database(path) as db:
            if action == "ack":
                # an already acknowledged message keeps its first time, as the agent does
                cursor = db.execute("UPDATE ingress_messages SET acked_at = COALESCE(acked_at, ?) WHERE id = ?", (int(time.time() * 1000), message_id))
            else:
                cursor = db.execute("DELETE FROM ingress_messages WHERE id = ?", (message_id,))
            return cursor.rowcount > 0

    def _result(self, result, via):
        if not isinstance(result, dict) or result.get("outcome") not in ("sent", "rejected", "queued"):
            raise FlashlexError("collect: an answer that is not a collect result: %r" % (result,), "bug")
        return CollectResult(result.get("messageId"), result["outcome"], result.get("status"), result.get("body"), result.get("error"), via)

    def _find_binary(self):
        if self._binary:
            found = self._binary if os.sep in self._binary else shutil.which(self._binary)
            if not found or not (os.path.isfile(found) and os.access(found, os.X_OK)):
                raise FlashlexError("%s: not an executable flashlex binary (FlashlexSDK binary=)" % self._binary, "config")
            return os.path.abspath(found)
        base = self._base_dir()
        here = os.path.dirname(os.path.abspath(__file__))
        candidates = []
        for folder in (os.path.dirname(base), base, here, os.path.dirname(here)):
            candidate = os.path.join(folder, "flashlex")
            if candidate not in candidates:
                candidates.append(candidate)
        for candidate in candidates:
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        found = shutil.which("flashlex")
        if found:
            return os.path.abspath(found)
        raise FlashlexError(
            "collect needs flashlex serve running or the flashlex binary (looked for %s and on PATH); start the service, or pass FlashlexSDK(..., binary='/path/to/flashlex')" % ", ".join(candidates),
            "config",
        )

    def _config_argument(self):
        """The -c for `flashlex collect`: the file, or the dict written to a private temporary file."""
        config = self._config
        if self._file and json.dumps(config, sort_keys=True, default=str) == self._file_config:
            return self._file, None
        # Without the old SDK's path overrides (given to the binary as -d/-k instead): the agent
        # warns about keys it does not know. JSON is YAML, so the agent reads the file as it is.
        plain = json.loads(json.dumps(config, default=str))
        db = _get(plain, "flashlex.app.db")
        if isinstance(db, dict):
            db.pop("dataPath", None)
        keys = _get(plain, "flashlex.thing.keys")
        if isinstance(keys, dict):
            keys.pop("path", None)
        handle, path = tempfile.mkstemp(prefix="flashlex-config-", suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump(plain, out)
        return path, path

    def _collect_with_binary(self, body, via):
        binary = self._find_binary()
        config, temporary = self._config_argument()
        try:
            command = [binary, "collect", "-c", config, "-k", self.keys_dir, "-d", self.data_dir, "--via", via, "--json"]
            try:
                done = subprocess.run(command, input=body.encode("utf-8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=self._timeout)
            except subprocess.TimeoutExpired:
                raise FlashlexError("flashlex collect did not finish within %s s; the message may be queued (flashlex outbox list)" % self._timeout, "unavailable") from None
            except OSError as err:
                raise FlashlexError("%s: cannot run (%s)" % (binary, err), "config") from None
        finally:
            if temporary:
                os.unlink(temporary)
        stdout = done.stdout.decode("utf-8", "replace").strip().splitlines()
        stderr = done.stderr.decode("utf-8", "replace")
        if temporary:
            stderr = stderr.replace(temporary, "<the config dict>")
        # 0 sent, 65 refused by the API (with a result) or bad input (without), 69 queued
        if done.returncode in (0, 65, 69) and stdout:
            try:
                result = json.loads(stdout[-1])
            except ValueError:
                result = None
            if isinstance(result, dict) and "outcome" in result:
                return self._result(result, "binary")
        code = done.returncode if done.returncode >= 0 else 70
        raise FlashlexError(_one_line(stderr, "flashlex collect exited %d" % done.returncode), KIND_OF_EXIT_CODE.get(code, "bug"), code)


def _one_line(stderr, fallback):
    """The agent's one-line error: its `flashlex: ...` line, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("flashlex: "):
            return line[len("flashlex: "):]
    return lines[-1] if lines else fallback
