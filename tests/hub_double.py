"""A loopback test double of the Hugging Face Hub, for huggingface_hub 2.4.0 with HF_HUB_DISABLE_XET=1.

It serves exactly what HfApi.create_repo and HfApi.upload_folder (the legacy LFS path: validate-yaml, preupload,
tree listing for delete_patterns, LFS batch, PUT and verify, NDJSON commit, repo info) and hf_hub_download (HEAD and
GET resolve) call, with the checks the real Hub makes where a client bug would show: the bearer token, the sha256
and size of every LFS object against the oid it announced, LFS pointers that name uploaded objects, binary files
sent as regular git blobs, the parent commit. Repositories live in memory as a list of commits. Every request is
recorded as (method, path, status); `fail_next(n, status)` answers the next n requests with that status and
`stall_next(n, s)` holds the next n replies back for s seconds (a timeout for a client with a shorter one).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

# What the Hub writes into a new model repository (abridged): these patterns go to LFS.
GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.bin",
        "*.ckpt",
        "*.h5",
        "*.npy",
        "*.npz",
        "*.onnx",
        "*.pt",
        "*.pth",
        "*.pkl",
        "*.safetensors",
        "*.tar",
        "*.zip",
        "*tfevents*",
    )
)
REGULAR_LIMIT = 10 * 1024 * 1024  # larger files must go through LFS
REPO = r"(?P<repo>[^/]+/[^/]+)"


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Stored:
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:
        """What preupload reports as the remote oid: sha256 for LFS files, the git blob sha1 otherwise."""
        return hashlib.sha256(self.data).hexdigest() if self.lfs else git_sha1(self.data)


@dataclass
class Commit:
    oid: str
    message: str
    description: str
    files: dict[str, Stored]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)

    @property
    def head(self) -> Commit:
        return self.commits[-1]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int


class Reply(Exception):
    """Raised by a route to answer with an error status (and the Hub's error headers)."""

    def __init__(self, status: int, message: str, body: dict | None = None, **headers: str):
        super().__init__(message)
        self.status, self.body, self.headers = status, {"error": message, **(body or {})}, headers


class HubDouble:
    def __init__(self, token: str = "hf_double_token", user: str = "double-user"):
        self.token, self.user = token, user
        self.repos: dict[str, Repo] = {}
        self.objects: dict[str, bytes] = {}  # LFS store: sha256 -> content
        self.announced: dict[str, int] = {}  # oids the batch API was told about -> size
        self.requests: list[Seen] = []
        self._faults: list[tuple[str, int | float]] = []
        self._lock = threading.Lock()  # the fault queue and the request log
        self._state = threading.Lock()  # repositories and objects: one route at a time (LFS PUTs come in parallel)
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> HubDouble:
        handler = type("Handler", (_Handler,), {"double": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._faults += [("fail", status)] * n

    def stall_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._faults += [("stall", seconds)] * n

    def next_fault(self) -> tuple[str, int | float] | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append(Seen(method, path, status))

    def is_lfs(self, repo: Repo, path: str, size: int, sample: bytes) -> bool:
        """The Hub's rule: .gitattributes' LFS patterns, large files, and binary content (a NUL byte) go to LFS."""
        attributes = repo.head.files.get(".gitattributes", Stored(b"", False)).data.decode()
        patterns = [line.split()[0] for line in attributes.splitlines() if "filter=lfs" in line]
        name = path.rsplit("/", 1)[-1]
        return (
            any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)
            or size > REGULAR_LIMIT
            or b"\0" in sample
        )

    # Routes: each takes the handler, the URL's named groups and the request body; returns (status, body, headers).

    def repo(self, handler, repo_id: str, write: bool) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not handler.authorised()):
            raise Reply(
                404 if repo is None else 401, f"Repository {repo_id} not found", **{"X-Error-Code": "RepoNotFound"}
            )
        if write:
            handler.require_token()
        return repo

    def commit_at(self, repo: Repo, revision: str) -> Commit:
        revision = unquote(revision)
        for commit in reversed(repo.commits):
            if revision in ("main", commit.oid):
                return commit
        raise Reply(404, f"Invalid rev id: {revision}", **{"X-Error-Code": "RevisionNotFound"})

    def create_repo(self, handler, groups, body):
        handler.require_token()
        payload = json.loads(body)
        if payload.get("type", "model") != "model":
            raise Reply(400, "this double serves model repositories only")
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        if repo_id in self.repos:
            raise Reply(409, "You already created this model repo", {"url": f"{self.url}/{repo_id}"})
        repo = Repo(repo_id, payload.get("visibility") == "private" or bool(payload.get("private")))
        repo.commits.append(
            Commit(
                self.new_oid(repo_id, "initial commit"),
                "initial commit",
                "",
                {".gitattributes": Stored(GITATTRIBUTES.encode(), False)},
            )
        )
        self.repos[repo_id] = repo
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}, {}

    def validate_yaml(self, handler, groups, body):
        content = json.loads(body)["content"]
        match = re.match(r"---\n(.*?)\n---", content, re.S)
        try:
            meta = (yaml.safe_load(match.group(1)) if match else None) or {}
            for model in meta.get("model-index", []):
                for result in model["results"]:
                    assert result["task"]["type"] and result["dataset"]["type"] and result["dataset"]["name"]
                    assert all(m["type"] and isinstance(m["value"], (int, float)) for m in result["metrics"])
        except Exception as err:  # noqa: BLE001 - any malformed metadata is the client's error
            return 400, {"errors": [{"message": f"invalid metadata: {err!r}"}], "warnings": []}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def preupload(self, handler, groups, body):
        repo = self.repo(handler, groups["repo"], write=True)
        head = self.commit_at(repo, groups["rev"])
        files = []
        for item in json.loads(body)["files"]:
            lfs = self.is_lfs(repo, item["path"], item["size"], base64.b64decode(item["sample"]))
            existing = head.files.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": existing.oid if existing else None,
                }
            )
        return 200, {"files": files, "commitOid": head.oid}, {}

    def tree(self, handler, groups, body):
        commit = self.commit_at(self.repo(handler, groups["repo"], write=False), groups["rev"])
        recursive = parse_qs(urlsplit(handler.path).query).get("recursive", ["false"])[0].lower() == "true"
        entries, folders = [], set()
        for path, stored in sorted(commit.files.items()):
            if not recursive and "/" in path:
                folders.add(path.split("/", 1)[0])
                continue
            entry = {"type": "file", "path": path, "size": len(stored.data), "oid": git_sha1(stored.data)}
            if stored.lfs:
                entry["lfs"] = {"oid": stored.oid, "size": len(stored.data), "pointerSize": 134}
            entries.append(entry)
        return 200, entries + [{"type": "directory", "path": f, "oid": git_sha1(f.encode())} for f in folders], {}

    def lfs_batch(self, handler, groups, body):
        self.repo(handler, groups["repo"].removesuffix(".git"), write=True)
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            raise Reply(400, "this double takes LFS uploads only")
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if self.objects.get(obj["oid"]) is None:  # no "actions": the object is already stored
                self.announced[obj["oid"]] = obj["size"]
                entry.update(
                    authenticated=True,
                    actions={
                        "upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}"},
                        "verify": {"href": f"{self.url}/lfs-verify/{obj['oid']}"},
                    },
                )
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"}

    def lfs_put(self, handler, groups, body):
        oid = groups["oid"]
        if oid not in self.announced:
            raise Reply(403, f"object {oid} was not announced to the batch API")
        if hashlib.sha256(body).hexdigest() != oid or len(body) != self.announced[oid]:
            raise Reply(400, f"object {oid}: content does not match its sha256/size")
        self.objects[oid] = body
        return 200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'}

    def lfs_verify(self, handler, groups, body):
        handler.require_token()
        payload = json.loads(body)
        stored = self.objects.get(payload["oid"])
        if stored is None or len(stored) != payload["size"]:
            raise Reply(404, f"object {payload['oid']} is not stored with size {payload['size']}")
        return 200, {}, {}

    def commit(self, handler, groups, body):
        repo = self.repo(handler, groups["repo"], write=True)
        head = self.commit_at(repo, groups["rev"])
        if head is not repo.head:
            raise Reply(400, "commits go to the tip of main only")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise Reply(400, "the first NDJSON line must be the header")
        header, files = lines[0]["value"], dict(head.files)
        if header.get("parentCommit") not in (None, head.oid):
            raise Reply(412, "parentCommit is not the tip of the branch")
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                data = base64.b64decode(value["content"])
                if self.is_lfs(repo, value["path"], len(data), data[:512]):
                    raise Reply(422, f"{value['path']} must be stored with LFS (binary, large or an LFS pattern)")
                files[value["path"]] = Stored(data, False)
            elif key == "lfsFile":
                data = self.objects.get(value["oid"])
                if data is None or ("size" in value and value["size"] != len(data)):
                    raise Reply(422, f"{value['path']}: LFS object {value['oid']} was never uploaded")
                files[value["path"]] = Stored(data, True)
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: s for p, s in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise Reply(400, f"unknown commit operation {key}")
        oid = self.new_oid(repo.repo_id, header["summary"], *sorted(f"{p}:{s.oid}" for p, s in files.items()))
        repo.commits.append(Commit(oid, header["summary"], header.get("description", ""), files))
        return 200, {"success": True, "commitOid": oid, "commitUrl": f"{self.url}/{repo.repo_id}/commit/{oid}"}, {}

    def model_info(self, handler, groups, body):
        repo = self.repo(handler, groups["repo"], write=False)
        commit = self.commit_at(repo, groups.get("rev") or "main")
        return (
            200,
            {
                "id": repo.repo_id,
                "sha": commit.oid,
                "private": repo.private,
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            },
            {},
        )

    def resolve(self, handler, groups, body):
        repo = self.repo(handler, groups["repo"], write=False)
        commit = self.commit_at(repo, groups["rev"])
        stored = commit.files.get(unquote(groups["path"]))
        if stored is None:
            raise Reply(404, "Entry not found", **{"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit.oid})
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{stored.oid}"', "Content-Type": "application/octet-stream"}
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{stored.oid}"', "X-Linked-Size": str(len(stored.data))})
        return 200, stored.data, headers

    def new_oid(self, *parts: str) -> str:
        return hashlib.sha1("\n".join([*parts, str(time.time_ns())]).encode()).hexdigest()


ROUTES = [
    ("POST", r"/api/repos/create", HubDouble.create_repo),
    ("POST", r"/api/validate-yaml", HubDouble.validate_yaml),
    ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", HubDouble.preupload),
    ("GET", rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)", HubDouble.tree),
    ("GET", rf"/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?", HubDouble.model_info),
    ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", HubDouble.commit),
    ("POST", rf"/{REPO}/info/lfs/objects/batch", HubDouble.lfs_batch),
    ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", HubDouble.lfs_put),
    ("POST", r"/lfs-verify/(?P<oid>[0-9a-f]{64})", HubDouble.lfs_verify),
    ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", HubDouble.resolve),
    ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", HubDouble.resolve),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from the Hub
    disable_nagle_algorithm = True  # headers and body go out as two writes: without this each reply waits ~40 ms
    double: HubDouble

    def log_message(self, *args) -> None:
        pass

    def authorised(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.double.token}"

    def require_token(self) -> None:
        if not self.authorised():  # the Hub's wording, which huggingface_hub maps to a plain 401 (not RepoNotFound)
            raise Reply(
                401,
                "Invalid credentials in Authorization header",
                **{"X-Error-Message": "Invalid credentials in Authorization header"},
            )

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def handle_any(self) -> None:
        path = urlsplit(self.path).path
        body = self.read_body()
        try:
            fault = self.double.next_fault()
            if fault and fault[0] == "fail":
                raise Reply(int(fault[1]), f"injected failure {fault[1]}")
            if fault:
                time.sleep(fault[1])
            if self.headers.get("Authorization") and not self.authorised():  # the Hub refuses a bad token anywhere
                self.require_token()
            for method, pattern, route in ROUTES:
                match = re.fullmatch(pattern, path)
                if method == self.command and match:
                    with self.double._state:
                        status, payload, headers = route(self.double, self, match.groupdict(), body)
                    break
            else:
                raise Reply(404, f"no route for {self.command} {path}")
        except Reply as reply:
            status, payload, headers = reply.status, reply.body, reply.headers
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.double.record(self.command, path, status)
        try:
            self.send_response(status)
            headers = {"Content-Type": "application/json", **headers}
            for key, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a stalled reply): nothing to do
            pass

    do_GET = do_HEAD = do_POST = do_PUT = handle_any
