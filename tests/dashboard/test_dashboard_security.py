"""The dashboard's security and bad-input behaviour, over a real SQLite board (and Redis
through a TCP proxy for the outage), driven through Starlette's test client."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from legato import jobboard, persistence  # noqa: E402
from legato.dashboard import parse_token  # noqa: E402
from legato.dashboard.app import create_app  # noqa: E402
from legato.jobboard.base import Job, JobBoard  # noqa: E402
from legato.persistence.base import Persistence  # noqa: E402
from legato.persistence.models import LogBook, TaskDetail  # noqa: E402
from legato.states import AtomState, JobState  # noqa: E402
from legato.testing.conductor import post_job, steps_flow, wait_until  # noqa: E402
from legato.testing.dashboard import running  # noqa: E402
from legato.testing.proxy import TCPProxy  # noqa: E402

SECRET = "s3cret-token-for-tests"
TOKEN = parse_token(f"alice:{SECRET}")
AUTH = {"Authorization": f"Bearer {SECRET}"}
HOSTILE = "<script>alert('x')</script>"
PASSWORD = "hunter2-sekrit"


@pytest.fixture
def client() -> Iterator[Any]:
    """``client(board, store, **options)``: an HTTP client of a dashboard served in a thread."""
    with contextlib.ExitStack() as stack:

        def make(board: JobBoard, store: Persistence, **options: Any) -> httpx.Client:
            options.setdefault("allow_actions", True)
            options.setdefault("token", TOKEN)
            url = stack.enter_context(running(create_app(board, store, **options)))
            return stack.enter_context(httpx.Client(base_url=url, timeout=30))

        yield make


def login(web: httpx.Client) -> str:
    """Log in with the token; the CSRF token of the session."""
    answer = web.post(
        "/login",
        data={"token": SECRET, "next": "/jobs"},
    )
    assert answer.status_code == 303
    page = web.get("/jobs").text
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def test_an_action_without_the_token_is_refused_and_changes_nothing(
    stack: Any, client: Any
) -> None:
    board, store = stack
    job = post_job(board, store, steps_flow, name="keep-me")
    web = client(board, store)
    for path in (f"/api/jobs/{job.uuid}/trash", f"/api/jobs/{job.uuid}/cancel"):
        assert web.post(path).status_code == 403
        assert (
            web.post(path, headers={"Authorization": "Bearer wrong-token-123"}).status_code == 403
        )
    assert web.post("/api/jobs", json={"factory": "x", "store": {}}).status_code == 403
    assert web.post("/api/trash/requeue", json={"all": True}).status_code == 403
    assert board.get(job.uuid).state is JobState.UNCLAIMED
    assert board.counts()["trashed"] == 0
    assert store.job_history(job.uuid) == []


def test_read_only_dashboard_refuses_even_the_right_token(stack: Any, client: Any) -> None:
    board, store = stack
    job = post_job(board, store, steps_flow)
    web = client(board, store, allow_actions=False, token=TOKEN)
    answer = web.post(f"/api/jobs/{job.uuid}/trash", headers=AUTH)
    assert answer.status_code == 403
    assert "--allow-actions" in answer.json()["error"]
    assert board.get(job.uuid).state is JobState.UNCLAIMED


def test_actions_with_the_token_record_who_acted(stack: Any, client: Any) -> None:
    board, store = stack
    job = post_job(board, store, steps_flow, name="to-cancel")
    web = client(board, store)
    answer = web.post(f"/api/jobs/{job.uuid}/cancel", headers=AUTH, json={"reason": "mistake"})
    assert answer.status_code == 200 and answer.json()["trashed"] is True
    (claim,) = store.job_history(job.uuid)
    assert claim.owner == "alice@dashboard" and claim.outcome == "trashed"
    assert "cancelled by alice@dashboard" in (claim.reason or "") and "mistake" in claim.reason
    again = web.post(f"/api/jobs/{job.uuid}/requeue", headers=AUTH)
    assert again.status_code == 200
    new = board.get(again.json()["uuid"])
    assert new.name == "to-cancel" and board.counts()["trashed"] == 0


def test_post_through_the_api(stack: Any, client: Any) -> None:
    board, store = stack
    web = client(board, store)
    answer = web.post(
        "/api/jobs",
        headers=AUTH,
        json={
            "factory": "legato.testing.conductor:steps_flow",
            "kwargs": {"steps": 2},
            "name": "posted",
            "priority": "high",
        },
    )
    assert answer.status_code == 201, answer.text
    job = board.get(answer.json()["uuid"])
    assert job.name == "posted" and job.priority.name == "HIGH"
    bad = web.post("/api/jobs", headers=AUTH, json={"factory": "nope:nothing"})
    assert bad.status_code == 400 and "not registered" in bad.json()["error"]
    missing = web.post(
        "/api/jobs",
        headers=AUTH,
        json={"factory": "legato.testing.conductor:add_flow", "store": {"x": 1}},
    )
    assert missing.status_code == 400 and "y" in missing.json()["error"]


def _hostile_job(board: JobBoard, store: Persistence) -> Job:
    job = post_job(board, store, steps_flow, name=HOSTILE, store={"note": HOSTILE})
    book = store.get_logbook(job.book_uuid)
    (flow_detail,) = list(book)
    atom = TaskDetail(HOSTILE, state=AtomState.SUCCESS, results={"html": HOSTILE})
    flow_detail.add(atom)
    store.update_flow_details(flow_detail)
    return job


def test_script_in_names_and_results_renders_as_text(stack: Any, client: Any) -> None:
    board, store = stack
    job = _hostile_job(board, store)
    web = client(board, store)
    login(web)
    for path in (
        "/jobs",
        f"/jobs/{job.uuid}",
        f"/jobs/{job.uuid}?part=live",
        "/?part=live",
        "/jobs?part=live",
        "/flows",
    ):
        page = web.get(path)
        assert page.status_code == 200, path
        assert HOSTILE not in page.text, path
        assert "<script>alert" not in page.text, path
    page = web.get(f"/jobs/{job.uuid}").text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "script-src 'self'" in web.get("/jobs").headers["content-security-policy"]


def test_no_url_password_in_any_page_or_api_response(stack: Any, client: Any) -> None:
    board, store = stack
    leaky = f"cannot reach postgresql://app:{PASSWORD}@db.example/prod"
    job = post_job(board, store, steps_flow, name=leaky, store={"dsn": f"redis://:{PASSWORD}@r"})
    web = client(board, store, label=f"board redis://:{PASSWORD}@127.0.0.1:6379/0")
    paths = [
        "/",
        "/?part=live",
        "/jobs",
        f"/jobs/{job.uuid}",
        "/flows",
        "/trash",
        "/conductors",
        "/api/stats",
        "/api/jobs",
        f"/api/jobs/{job.uuid}",
        "/api/flows",
        "/api/conductors",
        "/login",
        "/nowhere",
        "/api/jobs/nowhere",
    ]
    for path in paths:
        answer = web.get(path)
        assert PASSWORD not in answer.text, path
    assert "redis://:***@127.0.0.1" in web.get("/").text
    assert "app:***@db.example" in web.get(f"/api/jobs/{job.uuid}").text


def test_cross_site_form_posts_are_refused(stack: Any, client: Any) -> None:
    board, store = stack
    job = post_job(board, store, steps_flow)
    web = client(board, store)
    csrf = login(web)
    path = f"/api/jobs/{job.uuid}/trash"
    assert web.post(path, data={"reason": "x"}).status_code == 403
    assert (
        web.post(
            path,
            data={"csrf": "forged", "reason": "x"},
        ).status_code
        == 403
    )
    assert (
        web.post(
            path,
            data={"csrf": csrf},
            headers={"Origin": "http://evil.example"},
        ).status_code
        == 403
    )
    assert board.get(job.uuid).state is JobState.UNCLAIMED
    done = web.post(path, data={"csrf": csrf, "reason": "by form"})
    assert done.status_code == 303
    assert board.counts()["trashed"] == 1
    assert store.job_history(job.uuid)[-1].reason == "by form"


def test_a_form_post_without_a_session_is_refused(stack: Any, client: Any) -> None:
    board, store = stack
    job = post_job(board, store, steps_flow)
    web = client(board, store)
    csrf = login(web)
    stranger = client(board, store)
    refused = stranger.post(
        f"/api/jobs/{job.uuid}/cancel",
        data={"csrf": csrf},
    )
    assert refused.status_code == 403
    assert board.get(job.uuid).state is JobState.UNCLAIMED
    wrong = stranger.post("/login", data={"token": "not-the-token-at-all"})
    assert wrong.status_code == 403 and "wrong token" in wrong.text


@pytest.mark.parametrize(
    "ref", ["00000000-0000-0000-0000-000000000000", "not-a-uuid", "%3Cscript%3E"]
)
def test_unknown_or_malformed_job_id_is_a_404_page_with_a_way_back(
    stack: Any, ref: str, client: Any
) -> None:
    board, store = stack
    web = client(board, store)
    page = web.get(f"/jobs/{ref}")
    assert page.status_code == 404
    assert 'href="/jobs" id="back"' in page.text
    assert "<script>" not in page.text.split("<main>")[1]
    api = web.get(f"/api/jobs/{ref}")
    assert api.status_code == 404 and "error" in api.json()


def test_bad_filters_are_one_clear_line(stack: Any, client: Any) -> None:
    board, store = stack
    web = client(board, store)
    answer = web.get("/api/jobs?state=bogus")
    assert answer.status_code == 400
    assert answer.json() == {"error": "state must be one of waiting, delayed, claimed, trashed"}
    assert web.get("/api/jobs?limit=abc").status_code == 400
    assert web.get("/api/flows?since=yesterday").status_code == 400


def test_jobs_list_filters_and_pages(stack: Any, client: Any) -> None:
    board, store = stack
    for i in range(5):
        post_job(board, store, steps_flow, name=f"alpha-{i}")
    post_job(board, store, steps_flow, name="beta")
    web = client(board, store)
    page = web.get("/api/jobs?name=alpha&limit=2").json()
    assert [j["name"] for j in page["jobs"]] == ["alpha-0", "alpha-1"]
    rest = web.get(f"/api/jobs?name=alpha&limit=10&start={page['next_start']}").json()
    assert [j["name"] for j in rest["jobs"]] == ["alpha-2", "alpha-3", "alpha-4"]
    assert rest["next_start"] is None
    beta = web.get("/api/jobs?factory=steps_flow&name=beta").json()["jobs"]
    assert [j["factory"] for j in beta] == ["legato.testing.conductor:steps_flow"]


def test_board_down_shows_a_banner_and_recovers(
    redis_url: str, sqlite_url: str, client: Any
) -> None:
    store = persistence.connect(sqlite_url)
    store.upgrade()
    with (
        TCPProxy.for_url(redis_url) as proxy,
        jobboard.connect(
            proxy.url_for(redis_url),
            persistence=store,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
        ) as board,
    ):
        post_job(board, store, steps_flow, name="survivor")
        web = client(board, store)
        assert web.get("/").status_code == 200
        proxy.cut()
        down = web.get("/")
        assert down.status_code == 503
        assert "data-recover" in down.text and "Unavailable" in down.text
        assert web.get("/?part=live").status_code == 503
        assert web.get("/api/stats").status_code == 503
        proxy.restore()
        wait_until(lambda: web.get("/api/stats").status_code == 200, timeout=30)
        assert "survivor" in web.get("/jobs").text
    store.close()


def test_log_book_without_job_shows_nothing(stack: Any, client: Any) -> None:
    board, store = stack
    store.save_logbook(LogBook("orphan"))
    web = client(board, store)
    assert web.get("/api/jobs").json()["jobs"] == []
