"""Volumes on the simulated node: host folders that stand in for a pod's volumes.

- `emptyDir`: a fresh folder per pod, `<work_dir>/pods/<ns>_<pod>/volumes/<volume>`, removed
  when the pod object goes away (as the kubelet does).
- `configMap`, `secret`, `downwardAPI`, `projected` (their configMap/secret/downwardAPI sources):
  one file per key (or per `items` entry) in such a folder, rewritten when the source changes
  (checked every couple of seconds while the pod runs).
- `persistentVolumeClaim`: the folder of the PersistentVolume bound to the claim (hostPath or
  local PVs; the simulator's own provisioner makes hostPath ones, see `Provisioner`).
- `hostPath`: the path itself, with the `type` checks (and `...OrCreate`) of the kubelet.

`readOnly` is not enforced: processes run as the simulator's user on the host filesystem.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from cluster.sim_kube import Obj, Rest, conflict, not_found

log = logging.getLogger(__name__)

PROVISIONED_LABEL = "sim.hpo.dev/provisioned"


class VolumeError(Exception):
    """A volume cannot be set up (yet): the pod's containers wait with this message."""


def field_value(pod: Obj, path: str) -> str:
    """A downward-API fieldRef: metadata.name/namespace/uid, labels['k'], spec.nodeName, ..."""
    meta, spec = pod["metadata"], pod["spec"]
    for prefix, source in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str((meta.get(source) or {}).get(path[len(prefix) + 2 : -2], ""))
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
    }
    if path not in simple:
        raise VolumeError(f"fieldRef {path} is not supported by the node simulator")
    return simple[path]


def _keyed(source: Obj, kind: str, data: dict[str, bytes], name: str) -> dict[str, bytes]:
    items = source.get("items")
    if not items:
        return data
    out = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f"{kind} {name!r} has no key {item['key']!r}")
        out[item["path"]] = data[item["key"]]
    return out


class PodVolumes:
    """The host folders behind one pod's volumes."""

    def __init__(self, rest: Rest, pod: Obj, pod_dir: Path) -> None:
        self.rest, self.pod, self.root = rest, pod, pod_dir / "volumes"
        self.namespace = pod["metadata"]["namespace"]
        self.paths: dict[str, Path] = {}
        self._written: dict[str, set[str]] = {}

    def prepare(self) -> None:
        """Set up every volume; raises VolumeError for the first that cannot be (yet)."""
        for volume in self.pod["spec"].get("volumes") or []:
            if volume["name"] not in self.paths:
                self.paths[volume["name"]] = self._prepare(volume)

    def _prepare(self, volume: Obj) -> Path:
        name = volume["name"]
        if "hostPath" in volume:
            return _host_path(volume["hostPath"])
        if "persistentVolumeClaim" in volume:
            return self._claim_path(volume["persistentVolumeClaim"]["claimName"])
        folder = self.root / name
        if "emptyDir" in volume:
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        if any(k in volume for k in ("configMap", "secret", "downwardAPI", "projected")):
            self._sync_files(volume, folder)
            return folder
        kinds = sorted(set(volume) - {"name"})
        raise VolumeError(f"volume {name!r}: {kinds} is not supported by the node simulator")

    def _claim_path(self, claim: str) -> Path:
        try:
            pvc = self.rest.get(
                f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{claim}"
            )
        except Exception as exc:
            if not_found(exc):
                raise VolumeError(f'persistentvolumeclaim "{claim}" not found') from exc
            raise
        volume_name = pvc["spec"].get("volumeName")
        if not volume_name or pvc.get("status", {}).get("phase") != "Bound":
            raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound')
        pv = self.rest.get(f"/api/v1/persistentvolumes/{volume_name}")["spec"]
        source = pv.get("hostPath") or pv.get("local")
        if not source:
            raise VolumeError(f"persistentvolume {volume_name!r} is neither hostPath nor local")
        path = Path(source["path"])
        path.mkdir(parents=True, exist_ok=True)
        return path

    def refresh(self) -> None:
        """Bring configMap/secret/downwardAPI files up to date with their sources."""
        for volume in self.pod["spec"].get("volumes") or []:
            if volume["name"] in self._written:
                try:
                    self._sync_files(volume, self.paths[volume["name"]])
                except Exception as exc:
                    log.warning("refreshing volume %s failed: %s", volume["name"], exc)

    def _sync_files(self, volume: Obj, folder: Path) -> None:
        files = self._files(volume)
        folder.mkdir(parents=True, exist_ok=True)
        for relative, content in files.items():
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() and target.read_bytes() == content:
                continue
            temporary = target.with_name(f".{target.name}.tmp")
            temporary.write_bytes(content)
            os.replace(temporary, target)
        for stale in self._written.get(volume["name"], set()) - set(files):
            (folder / stale).unlink(missing_ok=True)
        self._written[volume["name"]] = set(files)

    def _files(self, volume: Obj) -> dict[str, bytes]:
        if "projected" in volume:
            files: dict[str, bytes] = {}
            for source in volume["projected"].get("sources") or []:
                files.update(self._source_files(source))
            return files
        return self._source_files(volume)

    def _source_files(self, source: Obj) -> dict[str, bytes]:
        if "configMap" in source:
            return self._object_files(
                source["configMap"], "configmaps", source["configMap"]["name"]
            )
        if "secret" in source:
            ref = source["secret"]
            return self._object_files(ref, "secrets", ref.get("secretName") or ref.get("name"))
        if "downwardAPI" in source:
            items = source["downwardAPI"].get("items") or []
            return {
                item["path"]: field_value(self.pod, item["fieldRef"]["fieldPath"]).encode()
                for item in items
                if "fieldRef" in item
            }
        kinds = sorted(source)
        raise VolumeError(f"projected source {kinds} is not supported by the node simulator")

    def _object_files(self, ref: Obj, plural: str, name: str) -> dict[str, bytes]:
        kind = plural[:-1]
        try:
            obj = self.rest.get(f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
        except Exception as exc:
            if not_found(exc) and ref.get("optional"):
                return {}
            if not_found(exc):
                raise VolumeError(f'{kind} "{name}" not found') from exc
            raise
        data = object_data(obj, plural)
        return _keyed(ref, kind, data, name)

    def mounts(self, container: Obj, expand: Any) -> list[tuple[str, Path]]:
        """(mountPath, host path) for each volumeMount; subPath folders are created."""
        out = []
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in self.paths:
                raise VolumeError(f"volumeMount {mount['name']!r} names no volume of the pod")
            base = self.paths[mount["name"]]
            sub = mount.get("subPath") or expand(mount.get("subPathExpr") or "")
            host = base / sub if sub else base
            if sub and base.is_dir() and not host.exists():
                host.mkdir(parents=True, exist_ok=True)
            out.append((mount["mountPath"].rstrip("/") or "/", host))
        return out

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def object_data(obj: Obj, plural: str) -> dict[str, bytes]:
    """A ConfigMap's data/binaryData or a Secret's data, as bytes per key."""
    if plural == "secrets":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _host_path(source: Obj) -> Path:
    path, kind = Path(source["path"]), source.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    elif kind == "Directory" and not path.is_dir():
        raise VolumeError(f"hostPath type check failed: {path} is not a directory")
    elif kind == "File" and not path.is_file():
        raise VolumeError(f"hostPath type check failed: {path} is not a file")
    return path


class Provisioner:
    """A stand-in for a dynamic provisioner: every unbound claim without a `selector` gets a
    hostPath PersistentVolume pre-bound to it (`claimRef`), backed by the folder
    `<work_dir>/volumes/<pv-name>`; the real PV controller then binds the two. The volume's
    reclaim policy is Retain; once it is Released (its claim deleted), the simulator deletes
    it and its folder, as a provisioner with `reclaimPolicy: Delete` would."""

    def __init__(self, rest: Rest, work_dir: Path) -> None:
        self.rest, self.root = rest, work_dir / "volumes"

    def on_claim(self, event: str, pvc: Obj) -> None:
        spec, meta = pvc["spec"], pvc["metadata"]
        if event == "DELETED" or spec.get("volumeName") or spec.get("selector"):
            return
        if meta.get("deletionTimestamp") or pvc.get("status", {}).get("phase") == "Bound":
            return
        name = f"pvc-{meta['uid']}"
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        try:
            self.rest.create("/api/v1/persistentvolumes", pv_manifest(pvc, name, folder))
            log.info("provisioned %s for claim %s/%s", name, meta["namespace"], meta["name"])
        except Exception as exc:
            if not conflict(exc):
                raise

    def on_volume(self, event: str, pv: Obj) -> None:
        meta = pv["metadata"]
        if event == "DELETED" or (meta.get("labels") or {}).get(PROVISIONED_LABEL) != "true":
            return
        if pv.get("status", {}).get("phase") != "Released" or meta.get("deletionTimestamp"):
            return
        try:
            self.rest.delete(f"/api/v1/persistentvolumes/{meta['name']}")
        except Exception as exc:
            if not not_found(exc):
                raise
        shutil.rmtree(self.root / meta["name"], ignore_errors=True)
        log.info("deleted released volume %s", meta["name"])


def pv_manifest(pvc: Obj, name: str, folder: Path) -> Obj:
    spec, meta = pvc["spec"], pvc["metadata"]
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    claim_ref = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
    }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {PROVISIONED_LABEL: "true"}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": spec.get("storageClassName") or "",
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
            "claimRef": claim_ref,
        },
    }
