"""Hub publishing: a real uba run pushed to a loopback double of the Hub and read back with hf_hub_download.

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE, HF_HUB_DISABLE_XET and HF_TOKEN_PATH once, at import, into its
constants module, so the fixtures patch those constants as well as the environment. It also fetches an "agent
harnesses" list from constants.ENDPOINT on its first request of the day (whatever endpoint HfApi was given), so a
fresh cached copy is put where it looks. Every test runs offline except while it talks to the double (the `hub`
fixture); only the opt-in test at the end talks to the real Hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, constants, hf_hub_download

from cluster.runner import execute, plan_run
from pipelines.cli import main
from pipelines.params import load_params
from pipelines.publish import PublishError, publish_run

ROOT = Path(__file__).resolve().parents[2]
REPO = "lab/uba-runs"
REAL_TOKEN = os.environ.get("HF_TOKEN")
REAL_REPO = os.environ.get("PAPERZOO_HUB_TEST_REPO")
REAL_XET_DISABLED, REAL_ENDPOINT = constants.HF_HUB_DISABLE_XET, constants.ENDPOINT
NOWHERE = "http://127.0.0.1:9"  # the discard port: a stray request fails here instead of reaching huggingface.co


def _load_double():
    """tests/ is not a package (and tests/components would shadow the real one on sys.path): load it by path."""
    spec = importlib.util.spec_from_file_location("hub_double", ROOT / "tests" / "hub_double.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["hub_double"] = module
    spec.loader.exec_module(module)
    return module


HubDouble = _load_double().HubDouble


def point_hub(monkeypatch, endpoint: str) -> None:
    """constants.ENDPOINT and the resolve-URL template must agree: hf_hub_url builds the URL from the template and
    swaps in an explicit endpoint only where the URL starts with constants.ENDPOINT."""
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")


def set_hub(monkeypatch, *, offline: bool, disable_xet: bool | None = None) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    if disable_xet is not None:
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1" if disable_xet else "0")
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", disable_xet)


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch, tmp_path):
    """No token, no cached login, no endpoint override, offline."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    harnesses = tmp_path / "hf-home" / ".agent_harnesses.json"
    harnesses.parent.mkdir()
    harnesses.write_text(json.dumps({"standardEnvVars": [], "harnesses": {}}))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(harnesses))
    point_hub(monkeypatch, NOWHERE)
    set_hub(monkeypatch, offline=True)


@pytest.fixture
def hub(monkeypatch):
    """The double, with huggingface_hub pointed at it, online, on the LFS protocol (Xet cannot be doubled)."""
    with HubDouble() as double:
        monkeypatch.setenv("HF_ENDPOINT", double.url)
        point_hub(monkeypatch, double.url)
        set_hub(monkeypatch, offline=False, disable_xet=True)
        yield double


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory) -> Path:
    params = load_params(ROOT / "params.yaml")
    request = plan_run("uba", params, preset="test", data_dir=data_root)
    return execute(request, run_root=tmp_path_factory.mktemp("runs"), data_dir=data_root).run_dir


def copy_run(run_dir: Path, tmp_path: Path, name: str | None = None) -> Path:
    copy = tmp_path / "runs" / "uba" / (name or run_dir.name)
    shutil.copytree(run_dir, copy)
    return copy


def publish(run_dir: Path, tmp_path: Path, said: list[str] | None = None, repo_id: str = REPO, **options):
    options.setdefault("backoff_s", 0.0)
    return publish_run(
        run_dir,
        repo_id,
        local_root=tmp_path / "published",
        say=(said.append if said is not None else lambda line: None),
        **options,
    )


def test_round_trip_bytes_card_commit_and_lfs(hub, finished_run, tmp_path):
    result = publish(finished_run, tmp_path, token=hub.token)
    assert result.pushed and result.url == f"{hub.url}/{REPO}"
    repo = hub.repos[REPO]
    assert result.commit_oid == repo.head.oid

    names = sorted(path.name for path in result.local_dir.iterdir())
    assert set(names) == {
        "README.md",
        "config.yaml",
        "metrics.json",
        "metrics.jsonl",
        "run.json",
        "environment.json",
        "lr.csv",
        "lr.png",
        "model.safetensors",
    }
    assert sorted(repo.head.files) == sorted([*names, ".gitattributes"])
    for name in names:
        downloaded = hf_hub_download(REPO, name, endpoint=hub.url, cache_dir=tmp_path / "cache", token=hub.token)
        assert Path(downloaded).read_bytes() == (result.local_dir / name).read_bytes(), name
        if name != "README.md":
            assert (result.local_dir / name).read_bytes() == (finished_run / name).read_bytes(), name

    card = ModelCard.load(hf_hub_download(REPO, "README.md", endpoint=hub.url, cache_dir=tmp_path / "cache"))
    metrics = json.loads((finished_run / "metrics.json").read_text())
    results = {r.metric_name: r for r in card.data.eval_results}
    assert {name: r.metric_value for name, r in results.items()} == metrics
    config_dataset = "images/digits"
    assert {(r.task_type, r.dataset_type, r.dataset_name) for r in results.values()} == {
        ("image-classification", config_dataset, config_dataset)
    }
    assert (results["test/acc"].dataset_split, results["test/acc"].metric_type) == ("test", "accuracy")
    assert (results["val/loss"].dataset_split, results["val/loss"].metric_type) == ("validation", "loss")
    assert results["final/train_acc"].dataset_split == "train"

    info = json.loads((finished_run / "run.json").read_text())
    run_id = f"uba/{finished_run.name}"
    ours = [commit for commit in repo.commits if run_id in commit.message]
    assert len(ours) == 1 and len(repo.commits) == 2  # the repository's initial commit, then exactly one per run
    assert info["code"]["git_sha"][:7] in ours[0].message and info["code"]["git_sha"] in ours[0].description
    assert ("dirty" if info["code"]["dirty"] else "clean") in ours[0].message
    manifest_sha256 = info["datasets"]["images/digits"]["manifest_sha256"]
    assert f"data: images/digits manifest sha256 {manifest_sha256}" in ours[0].description
    if info["code"]["dirty"]:
        assert info["code"]["diff_sha256"] in ours[0].description
        assert info["code"]["diff_sha256"][:12] in ours[0].message

    weights = hashlib.sha256((finished_run / "model.safetensors").read_bytes()).hexdigest()
    seen = [(r.method, r.path, r.status) for r in hub.requests]
    assert ("PUT", f"/lfs-upload/{weights}", 200) in seen and ("POST", f"/lfs-verify/{weights}", 200) in seen
    assert repo.head.files["model.safetensors"].lfs and not repo.head.files["metrics.json"].lfs
    assert sum(path.endswith("/commit/main") for _, path, _ in seen) == 1
    assert {status for _, _, status in seen} == {200}  # nothing went to a route the double lacks


def test_next_run_is_one_more_commit_that_mirrors_it(hub, finished_run, tmp_path):
    first = publish(finished_run, tmp_path, token=hub.token)
    assert publish(finished_run, tmp_path, token=hub.token).commit_oid == first.commit_oid  # unchanged: no commit
    second = copy_run(finished_run, tmp_path, "20990101-000000-00000000-s1")
    (second / "lr.png").unlink()
    (second / "lr.csv").unlink()
    result = publish(second, tmp_path, token=hub.token)
    repo = hub.repos[REPO]
    assert len(repo.commits) == 3 and result.commit_oid == repo.head.oid and second.name in repo.head.message
    assert "lr.png" not in repo.head.files and "lr.png" in repo.commits[1].files  # the tip is exactly one run
    assert (tmp_path / "published" / "uba" / finished_run.name / "lr.png").is_file()


def test_without_a_token_nothing_is_sent(hub, finished_run, tmp_path):
    said: list[str] = []
    result = publish(finished_run, tmp_path, said)
    assert not result.pushed and result.url is None and hub.requests == []
    assert (result.local_dir / "README.md").is_file() and (result.local_dir / "model.safetensors").is_file()
    assert str(result.local_dir) in result.message and "hf auth login" in result.message
    assert "HF_TOKEN" in result.message and result.message in said and "\n" not in result.message


def test_offline_mode_sends_nothing_even_with_a_token(hub, finished_run, tmp_path, monkeypatch):
    set_hub(monkeypatch, offline=True)
    result = publish(finished_run, tmp_path, token=hub.token)
    assert not result.pushed and hub.requests == [] and "HF_HUB_OFFLINE" in result.message
    assert str(result.local_dir) in result.message


def test_token_from_the_environment(hub, finished_run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", hub.token)
    assert publish(finished_run, tmp_path).pushed


def test_a_500_is_retried_then_succeeds(hub, finished_run, tmp_path):
    said: list[str] = []
    hub.fail_next(1, 500)
    result = publish(finished_run, tmp_path, said, token=hub.token)
    assert result.pushed and len(hub.repos[REPO].commits) == 2
    assert [r.status for r in hub.requests if r.path == "/api/repos/create"] == [500, 200]
    assert any("HTTP 500" in line and "retrying" in line for line in said)


def test_a_stalled_reply_times_out_and_is_retried(hub, finished_run, tmp_path):
    said: list[str] = []
    hub.stall_next(1, 1.5)
    result = publish(finished_run, tmp_path, said, token=hub.token, timeout_s=0.3)
    assert result.pushed and any("Timeout" in line and "retrying" in line for line in said)


def test_persistent_5xx_ends_in_one_line_and_keeps_the_folder(hub, finished_run, tmp_path):
    hub.fail_next(3, 503)
    with pytest.raises(PublishError) as caught:
        publish(finished_run, tmp_path, token=hub.token, retries=2)
    message = str(caught.value)
    local_dir = tmp_path / "published" / "uba" / finished_run.name
    assert "after 3 attempts" in message and "HTTP 503" in message and str(local_dir) in message
    assert "\n" not in message and (local_dir / "model.safetensors").is_file()
    assert [r.status for r in hub.requests] == [503, 503, 503] and REPO not in hub.repos


def test_unreachable_hub_is_retried_then_fails(finished_run, tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    set_hub(monkeypatch, offline=False, disable_xet=True)
    said: list[str] = []
    with pytest.raises(PublishError, match="after 2 attempts .*ConnectError"):
        publish(finished_run, tmp_path, said, token="hf_any", retries=1)
    assert sum("retrying" in line for line in said) == 1


def test_a_401_fails_at_once_with_exit_code_2(hub, finished_run, tmp_path, monkeypatch, capsys):
    with pytest.raises(PublishError) as caught:
        publish(finished_run, tmp_path, token="hf_wrong")
    message = str(caught.value)
    local_dir = tmp_path / "published" / "uba" / finished_run.name
    assert REPO in message and "401" in message and "write" in message and str(local_dir) in message
    assert "\n" not in message and (local_dir / "README.md").is_file()
    assert [r.path for r in hub.requests if r.path == "/api/repos/create"] == ["/api/repos/create"]  # no retry
    assert {r.status for r in hub.requests} == {401}

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    code = main(["publish", str(finished_run), "--repo-id", REPO, "--local-root", str(tmp_path / "cli")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("paperzoo: error:") and "\n" not in err and REPO in err
    assert (tmp_path / "cli" / "uba" / finished_run.name / "metrics.json").is_file()


def card_row(text: str, key: str) -> str:
    (row,) = [line for line in text.splitlines() if line.startswith(f"| {key} |")]
    return row


@pytest.mark.parametrize("dirty", [False, True])
def test_the_card_carries_the_code_and_data_provenance(finished_run, tmp_path, dirty):
    run_dir = copy_run(finished_run, tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["schema"] == 2
    sha = "0123456789abcdef0123456789abcdef01234567"
    info["code"] = (
        {"git_sha": sha, "dirty": True, "diff_sha256": "d" * 64} if dirty else {"git_sha": sha, "dirty": False}
    )
    info["datasets"]["images/digits"]["dvc_md5"] = "5c7edd0e1053f93524319e0a92368f81.dir"
    info["datasets"]["tokens/tiny"] = {"manifest_sha256": "e" * 64}
    (run_dir / "run.json").write_text(json.dumps(info))
    text = ModelCard.load(publish(run_dir, tmp_path).local_dir / "README.md").text
    expected = f"{sha} (dirty, diff sha256 {'d' * 64})" if dirty else f"{sha} (clean)"
    assert card_row(text, "code") == f"| code | {expected} |"
    manifest_sha256 = info["datasets"]["images/digits"]["manifest_sha256"]
    assert f"| images/digits | {manifest_sha256} | 5c7edd0e1053f93524319e0a92368f81.dir |" in text
    assert f"| tokens/tiny | {'e' * 64} | not tracked by DVC |" in text
    assert f"git checkout {sha}" in text and ("uncommitted source edits" in text) == dirty


def test_an_old_run_json_without_provenance_still_publishes(finished_run, tmp_path, hub):
    run_dir = copy_run(finished_run, tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    for key in ("schema", "datasets"):
        info.pop(key)
    info["code"] = {"git_sha": "0123456789abcdef", "dirty": True}
    (run_dir / "run.json").write_text(json.dumps(info))
    result = publish(run_dir, tmp_path, token=hub.token)
    assert result.pushed
    text = ModelCard.load(result.local_dir / "README.md").text
    assert card_row(text, "code") == "| code | 0123456789abcdef (dirty, diff not recorded) |"
    assert "Dataset digests: not recorded" in text
    (commit,) = [c for c in hub.repos[REPO].commits if run_dir.name in c.message]
    assert "dirty, diff not recorded" in commit.message and "data: not recorded" in commit.description


def test_a_run_without_weights_has_its_own_task_in_the_card(data_root, tmp_path):
    request = plan_run(
        "uba", load_params(ROOT / "params.yaml"), preset="test", overrides=["task=quadratic"], data_dir=data_root
    )
    run_dir = execute(request, run_root=tmp_path / "runs", data_dir=data_root).run_dir
    result = publish(run_dir, tmp_path)
    assert not (result.local_dir / "model.safetensors").exists() and (result.local_dir / "lr.png").is_file()
    card = ModelCard.load(result.local_dir / "README.md")
    assert {r.task_type for r in card.data.eval_results} == {"other"}
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == json.loads(
        (run_dir / "metrics.json").read_text()
    )
    assert "--set task=quadratic" in card.text and "arxiv:2505.24452" in card.data.tags
    assert "This run reads no dataset." in card.text


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("metrics.json", "is not a finished run (no metrics.json)"),
        ("run.json", "is not a finished run (no run.json)"),
        ("running", "is not a finished run (status 'running'); finish it first with `paperzoo run --resume"),
    ],
)
def test_an_unfinished_run_is_a_one_line_error_before_anything_is_written(finished_run, tmp_path, damage, expected):
    run_dir = copy_run(finished_run, tmp_path)
    if damage == "running":
        info = json.loads((run_dir / "run.json").read_text())
        (run_dir / "run.json").write_text(json.dumps({**info, "status": "running"}))
    else:
        (run_dir / damage).unlink()
    with pytest.raises(PublishError) as caught:
        publish(run_dir, tmp_path, token="hf_any")
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "published").exists()


def test_bad_repo_id_and_not_a_run_dir(finished_run, tmp_path):
    with pytest.raises(PublishError, match="must be ORG/NAME"):
        publish_run(finished_run, "no-namespace", local_root=tmp_path / "published")
    with pytest.raises(PublishError, match="is not a finished run"):
        publish_run(tmp_path, REPO, local_root=tmp_path / "published")
    assert not (tmp_path / "published").exists()


def test_the_double_rejects_an_object_that_does_not_match_its_oid(hub):
    def call(method: str, path: str, body: bytes, token: str | None = hub.token) -> int:
        request = urllib.request.Request(
            hub.url + path, data=body, method=method, headers={"Authorization": f"Bearer {token}"} if token else {}
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    assert call("POST", "/api/repos/create", json.dumps({"name": "x", "organization": "lab"}).encode()) == 200
    content = b"weights"
    oid = hashlib.sha256(content).hexdigest()
    batch = {"operation": "upload", "objects": [{"oid": oid, "size": len(content)}]}
    assert call("POST", "/lab/x.git/info/lfs/objects/batch", json.dumps(batch).encode()) == 200
    assert call("PUT", f"/lfs-upload/{oid}", b"tampered", token=None) == 400
    assert call("PUT", f"/lfs-upload/{'0' * 64}", content, token=None) == 403  # never announced
    commit = [
        {"key": "header", "value": {"summary": "s"}},
        {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": oid, "size": 7}},
    ]
    ndjson = "".join(json.dumps(line) + "\n" for line in commit).encode()
    assert call("POST", "/api/models/lab/x/commit/main", ndjson) == 422  # the pointer names no stored object
    assert call("PUT", f"/lfs-upload/{oid}", content, token=None) == 200
    assert call("POST", "/api/models/lab/x/commit/main", ndjson, token="hf_wrong") == 401
    assert call("POST", "/api/models/lab/x/commit/main", ndjson) == 200


@pytest.mark.skipif(not (REAL_TOKEN and REAL_REPO), reason="opt-in: set HF_TOKEN and PAPERZOO_HUB_TEST_REPO")
def test_real_hub(finished_run, tmp_path, monkeypatch):
    point_hub(monkeypatch, REAL_ENDPOINT)
    set_hub(monkeypatch, offline=False, disable_xet=REAL_XET_DISABLED)
    result = publish(finished_run, tmp_path, repo_id=REAL_REPO, token=REAL_TOKEN, private=True, backoff_s=2.0)
    assert result.pushed and result.commit_oid
    downloaded = hf_hub_download(
        REAL_REPO, "metrics.json", revision=result.commit_oid, token=REAL_TOKEN, cache_dir=tmp_path / "cache"
    )
    assert Path(downloaded).read_bytes() == (finished_run / "metrics.json").read_bytes()


def test_timeout_bounds_a_push_to_a_hanging_hub(hub, finished_run, tmp_path):
    """A Hub that accepts connections and never answers: --timeout ends the push, retries and waits included."""
    hub.stall_next(1000, 30.0)
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(PublishError) as caught:
        publish(finished_run, tmp_path, said, token=hub.token, deadline_s=2.0, backoff_s=0.5)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    local_dir = tmp_path / "published" / "uba" / finished_run.name
    assert "gave up at --timeout 2 s" in message and str(local_dir) in message and "\n" not in message
    assert caught.value.retryable and (local_dir / "README.md").is_file()
    print(f"publish against a hanging Hub with --timeout 2: {elapsed:.1f} s")


def test_timeout_leaves_room_for_a_retry_that_succeeds(hub, finished_run, tmp_path):
    hub.stall_next(1, 1.5)
    said: list[str] = []
    result = publish(finished_run, tmp_path, said, token=hub.token, timeout_s=0.3, deadline_s=60.0)
    assert result.pushed and any("Timeout" in line and "retrying" in line for line in said)


def test_cli_timeout_option(hub, finished_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", hub.token)
    hub.stall_next(1000, 30.0)
    started = time.monotonic()
    code = main(
        ["publish", str(finished_run), "--repo-id", REPO, "--local-root", str(tmp_path / "cli"), "--timeout", "1"]
    )
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("paperzoo: error:") and "\n" not in err and "--timeout 1 s" in err
    print(f"paperzoo publish --timeout 1 against a hanging Hub: {elapsed:.1f} s")  # measured, not asserted
    assert main(["publish", str(finished_run), "--repo-id", REPO, "--timeout", "-3"]) == 2
    assert "--timeout must be a positive number of seconds" in capsys.readouterr().err
