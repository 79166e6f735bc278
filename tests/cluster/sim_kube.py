"""The node simulator's edge to the API server: JSON requests and list+watch caches, as dicts.

The generated client's typed methods validate and deserialize every call (and some, like the
Binding subresource, fail deserializing the answer); the simulator only needs raw JSON, so it
goes through the `ApiClient`'s transport (same kubeconfig, TLS and token) and keeps the API's
camelCase field names.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
WATCH_SECONDS = 30


def now() -> str:
    """metav1.Time: RFC 3339, whole seconds, UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    """metav1.MicroTime, as Leases want it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


class Rest:
    """JSON in, JSON out; non-2xx answers raise the client's `ApiException`."""

    def __init__(self, api_client: ApiClient) -> None:
        self.client = api_client

    def _request(
        self, method: str, path: str, body: Any, query: dict[str, str] | None, content_type: str
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        return self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Obj:
        request = self._request(method, path, body, query, content_type)
        answer = self.client.call_api(*request, _request_timeout=timeout)
        data = answer.read()
        if not 200 <= answer.status <= 299:
            text = data.decode("utf-8", "replace") if data else ""
            raise ApiException.from_response(http_resp=answer, body=text, data=None)
        return json.loads(data) if data else {}

    def get(self, path: str, query: dict[str, str] | None = None) -> Obj:
        return self.call("GET", path, query=query)

    def create(self, path: str, body: Obj) -> Obj:
        return self.call("POST", path, body)

    def patch(self, path: str, body: Obj, content_type: str = MERGE_PATCH) -> Obj:
        return self.call("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: Obj | None = None, timeout: float = 30) -> Obj:
        return self.call("DELETE", path, body, timeout=timeout)

    def watch(
        self, path: str, query: dict[str, str], on_open: Callable[[Any], None]
    ) -> Iterator[Obj]:
        """Watch events as dicts; `on_open` gets the raw response (to shut it down from outside)."""
        query = {**query, "watch": "true", "allowWatchBookmarks": "true"}
        query["timeoutSeconds"] = str(WATCH_SECONDS)
        request = self._request("GET", path, None, query, "application/json")
        answer = self.client.call_api(*request, _request_timeout=(10, WATCH_SECONDS + 15))
        raw = answer.response
        try:
            if answer.status != 200:
                text = raw.data.decode("utf-8", "replace")
                raise ApiException.from_response(http_resp=answer, body=text, data=None)
            on_open(raw)
            for line in iter_resp_lines(raw):
                if line:
                    yield json.loads(line)
        finally:
            raw.close()


def not_found(exc: Exception) -> bool:
    return isinstance(exc, ApiException) and exc.status == 404


def conflict(exc: Exception) -> bool:
    return isinstance(exc, ApiException) and exc.status == 409


Handler = Callable[[str, Obj], None]


class Watcher(threading.Thread):
    """A list+watch cache of one collection, like client-go's informer, on a daemon thread.

    Calls `handler(event, obj)` for every change: ADDED, MODIFIED, DELETED (also for objects
    that vanished between two lists). It re-lists after errors and expired resource versions.
    """

    def __init__(
        self, rest: Rest, path: str, handler: Handler, query: dict[str, str] | None = None
    ) -> None:
        super().__init__(name=f"watch {path}", daemon=True)
        self.rest, self.path, self.handler = rest, path, handler
        self.query = query or {}
        self.objects: dict[str, Obj] = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self._stopping = threading.Event()
        self._response: Any = None

    def snapshot(self) -> list[Obj]:
        with self.lock:
            return list(self.objects.values())

    def get(self, namespace: str, name: str) -> Obj | None:
        with self.lock:
            return self.objects.get(f"{namespace}/{name}")

    def stop(self) -> None:
        self._stopping.set()
        response = self._response
        if response is not None:
            # RuntimeError/ValueError: already released or closed; the loop ends by itself
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                response.shutdown()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                version = self._list()
                self.synced.set()
                self._watch(version)
            except Exception as exc:
                if self._stopping.is_set():
                    return
                log.warning("watch %s failed (%s); listing again in 1 s", self.path, exc)
                self._stopping.wait(1.0)

    def _list(self) -> str:
        listing = self.rest.get(self.path, self.query)
        fresh = {key(item): item for item in listing.get("items", [])}
        with self.lock:
            gone = [obj for k, obj in self.objects.items() if k not in fresh]
            changed = [obj for k, obj in fresh.items() if self.objects.get(k) != obj]
            self.objects = fresh
        for obj in gone:
            self._handle("DELETED", obj)
        for obj in changed:
            self._handle("MODIFIED", obj)
        return str(listing["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> None:
        while not self._stopping.is_set():
            query = {**self.query, "resourceVersion": version}
            for event in self.rest.watch(self.path, query, self._opened):
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    log.info("watch %s: %s; listing again", self.path, obj.get("message"))
                    return
                version = obj["metadata"]["resourceVersion"]
                if kind == "BOOKMARK":
                    continue
                with self.lock:
                    if kind == "DELETED":
                        self.objects.pop(key(obj), None)
                    else:
                        self.objects[key(obj)] = obj
                self._handle(kind, obj)
            self._response = None

    def _opened(self, response: Any) -> None:
        self._response = response
        if self._stopping.is_set():
            self.stop()

    def _handle(self, kind: str, obj: Obj) -> None:
        try:
            self.handler(kind, obj)
        except Exception:
            log.exception("handling %s %s", kind, key(obj))


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
