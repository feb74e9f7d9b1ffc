"""The web dashboard end to end: ``aigw serve --demo`` (config center, gateway, mock provider and
``aigw web``) driven in Debian's headless Chromium through Playwright.

An admin signs in, creates a namespace and a key (shown once, copied), chats with it in the
playground (the reply streams in), finds the request in the request logs and counted on the
overview, compares versions and rolls one back; a viewer sees every page but can change nothing
(buttons disabled, the API refuses); the Chinese translation renders. Every page is saved as a
screenshot in tests/artifacts/web/; the overview and playground ones also go to docs/images/
when they are missing there or AIGW_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import Process, free_port, serve_demo_command

CHROMIUM = Path(os.environ.get("AIGW_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "web"
DOCS_IMAGES = ROOT / "docs" / "images"
BUILD = ROOT / "src" / "aigw" / "web" / "static" / "index.html"
PASSWORD = "correct-horse-battery-staple"
NAMESPACE = "team-e2e"
KEY_NAME = "e2e-key"

pytestmark = pytest.mark.timeout(420)


def _missing(what: str) -> None:
    # `make test` installs and builds everything: a missing piece is a broken setup, not a skip.
    pytest.fail(f"{what}: run `make test`, or `make web` and scripts/ensure-test-tools.sh")


try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev requirements have it
    sync_playwright = None  # type: ignore[assignment]


@dataclass
class Deployment:
    web: str
    gateway: str
    mock: str
    admin_token: str
    gateway_token: str
    center: str
    process: Process

    def api(
        self, method: str, path: str, token: str | None = None, **kwargs: object
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.request(method, f"{self.web}{path}", headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not BUILD.is_file():
        _missing(f"the dashboard is not built ({BUILD})")
    tmp = tmp_path_factory.mktemp("web-e2e")
    port, mock_port, web_port, center_port = free_port(), free_port(), free_port(), free_port()
    process = Process(
        serve_demo_command(
            tmp / "data",
            port=port,
            mock_port=mock_port,
            center_port=center_port,
            tokens_port=free_port(),
            web_port=web_port,
        ),
        tmp / "serve.log",
        env={"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""},
    )
    try:
        process.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        web = f"http://127.0.0.1:{web_port}"
        process.wait_http(f"{web}/healthz", timeout=30)
        deployment = Deployment(
            web,
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{mock_port}",
            (tmp / "data" / "admin-token").read_text().strip(),
            (tmp / "data" / "gateway-token").read_text().strip(),
            f"http://127.0.0.1:{center_port}",
            process,
        )
        assert deployment.api("POST", "/api/v1/namespaces", json={"name": "research"}).is_success
        for username, role in (("ada", "admin"), ("vic", "viewer")):
            created = deployment.api(
                "POST",
                "/api/v1/users",
                json={"username": username, "password": PASSWORD, "role": role},
            )
            assert created.status_code == 201, created.text
        yield deployment
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        _missing("playwright is not installed")
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


def _page(browser: Browser, deployment: Deployment, locale: str = "en-US") -> Page:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale=locale)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=deployment.web)
    context.set_default_timeout(20_000)
    page = context.new_page()
    foreign: list[str] = []
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith((deployment.web, "data:", "blob:"))
            else foreign.append(request.url)
        ),
    )
    page.foreign_requests = foreign  # type: ignore[attr-defined]
    return page


def _shot(page: Page, name: str) -> Path:
    page.wait_for_load_state("networkidle")
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _for_docs(path: Path, name: str) -> None:
    target = DOCS_IMAGES / name
    if not target.exists() or os.environ.get("AIGW_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _sign_in(
    page: Page,
    deployment: Deployment,
    username: str,
    *,
    labels: tuple[str, str, str] = ("Username", "Password", "Sign in"),
) -> None:
    page.goto(deployment.web + "/")
    page.get_by_role("textbox", name=labels[0]).fill(username)
    page.get_by_role("textbox", name=labels[1]).fill(PASSWORD)
    # (antd spaces out two-character Chinese button labels: 登 录)
    spaced = r"\s*".join(labels[2]) if not labels[2].isascii() else re.escape(labels[2])
    page.get_by_role("button", name=re.compile(f"^{spaced}$")).click()
    expect(page.get_by_test_id("current-user")).to_contain_text(username)


def _eventually(page: Page, check: Callable[[], bool], what: str, timeout: float = 45) -> None:
    """Reload until ``check`` holds (data flushed by the gateway shows up within seconds)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not show within {timeout:.0f}s")
        page.wait_for_timeout(1000)
        page.reload()
        page.wait_for_load_state("networkidle")


def _backfill_history(deployment: Deployment, minutes: int = 45) -> None:
    """Earlier traffic of two other namespaces, posted as a gateway posts its usage counters, so
    that the overview's charts (kept for the README) have a history; the test's own namespace
    gets only real requests."""
    now = int(time.time()) // 60 * 60
    items = []
    for ago in range(1, minutes + 1):
        wave = 1 + (ago % 7) / 3
        for name, model, requests, errors in (
            ("demo/mock-gpt-4o-mini", "mock-gpt-4o-mini", int(40 * wave), ago % 5 == 0),
            ("demo/mock-claude-haiku", "mock-claude-haiku", int(18 * wave), 0),
            ("research/mock-gpt-4o", "mock-gpt-4o", int(9 * wave) + ago % 3, ago % 9 == 0),
        ):
            items.append(
                {
                    "minute": now - ago * 60,
                    "dimension": "namespace_model",
                    "name": name,
                    "requests": requests,
                    "errors": int(errors) * (1 + ago % 3),
                    "prompt_tokens": requests * 24,
                    "completion_tokens": requests * (60 if "claude" in model else 40),
                    "cost_micro_usd": requests * 30,
                    "latency_ms_total": requests * (180 + (ago * 37) % 120),
                }
            )
    answer = httpx.post(
        f"{deployment.center}/internal/v1/usage",
        json={"items": items},
        headers={"Authorization": f"Bearer {deployment.gateway_token}"},
    )
    assert answer.status_code == 200, answer.text


def _logged(deployment: Deployment) -> int:
    page = deployment.api("GET", "/api/v1/requests", params={"namespace": NAMESPACE, "limit": 1000})
    return len(page.json()["items"])


def _expect_counted(page: Page, deployment: Deployment, at_least: int) -> None:
    """The overview's top namespaces count the namespace's requests: as many as the log holds."""
    deadline = time.monotonic() + 45
    while _logged(deployment) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} requests logged"
        time.sleep(0.5)
    row = page.locator(".ant-table-row", has_text=NAMESPACE)
    count = re.compile(rf"^{re.escape(NAMESPACE)}\s+{_logged(deployment)}\s")
    _eventually(page, lambda: row.count() == 1 and bool(count.match(row.inner_text())), "the count")


def _pick(page: Page, select_label: str, option: str) -> None:
    page.get_by_label(select_label, exact=True).click()
    page.locator(f'.ant-select-item-option[title="{option}"]').click()


def test_admin_walks_from_a_new_namespace_to_a_counted_chat(
    browser: Browser, deployment: Deployment
) -> None:
    page = _page(browser, deployment)
    page.goto(deployment.web + "/")
    expect(page.get_by_role("heading", name="Sign in to aigw")).to_be_visible()
    _shot(page, "01-sign-in")
    _sign_in(page, deployment, "ada")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()

    # A namespace with a policy.
    page.get_by_role("menuitem", name="Namespaces").click()
    page.get_by_role("button", name="New namespace").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("#name").fill(NAMESPACE)
    dialog.locator("#description").fill("made by the dashboard's end-to-end test")
    dialog.get_by_role("spinbutton", name="Requests/min").fill("600")
    dialog.get_by_role("button", name="Save").click()
    row = page.get_by_role("row", name=re.compile(NAMESPACE))
    expect(row).to_contain_text("Requests/min: 600")
    _shot(page, "02-namespaces")
    namespace = deployment.api("GET", f"/api/v1/namespaces/{NAMESPACE}").json()
    assert namespace["policy"]["limits"] == {"requests_per_minute": 600}

    # A key, shown once, with a copy button.
    row.get_by_role("button", name="Keys").click()
    expect(page).to_have_url(re.compile(f"/keys/{NAMESPACE}$"))
    page.get_by_role("button", name="New key").click()
    page.get_by_role("dialog").locator("#name").fill(KEY_NAME)
    page.get_by_role("dialog").get_by_role("button", name="Create").click()
    shown = page.get_by_test_id("new-key")
    expect(shown).to_contain_text("sk-aigw-")
    key = shown.inner_text().strip()
    assert re.fullmatch(r"sk-aigw-[A-Za-z0-9_-]{20,}", key), key
    expect(page.get_by_text("it is shown only once")).to_be_visible()
    _shot(page, "03-key-shown-once")
    shown.locator(".ant-typography-copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == key
    listed = deployment.api("GET", f"/api/v1/namespaces/{NAMESPACE}/keys/{KEY_NAME}").json()
    assert key.startswith(listed["prefix"]) and "key" not in listed  # only its prefix is kept

    # The playground, opened with that key; the reply streams in (the mock paced to 8 tokens/s).
    httpx.put(f"{deployment.mock}/_mock/config", json={"tokens_per_second": 8}).raise_for_status()
    page.get_by_role("button", name="Try in playground").click()
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    expect(page.get_by_label("API key")).to_have_value(key)
    model = page.locator(".ant-select", has=page.get_by_role("combobox", name="Model"))
    expect(model).to_contain_text("demo-chat")
    page.get_by_label("Message").fill("Hello from the dashboard test")
    with page.expect_response(lambda r: r.url.endswith("/gateway/v1/chat/completions")) as answer:
        page.get_by_role("button", name="Send").click()
    assert answer.value.headers["content-type"].startswith("text/event-stream")
    reply = page.get_by_test_id("assistant-message")
    # Part of the reply is on screen while the stream is still open (Stop is still offered).
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(reply).to_contain_text(re.compile(r"\w+"))
    assert page.get_by_role("button", name="Stop").is_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=30_000)
    meta = page.get_by_test_id("chat-meta")
    expect(meta).to_contain_text("completion")
    httpx.put(f"{deployment.mock}/_mock/config", json={"tokens_per_second": 0}).raise_for_status()
    request_id = meta.get_by_role("link").inner_text().strip()
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
    _for_docs(_shot(page, "04-playground"), "dashboard-playground.png")

    # The request is in the request logs, with its detail.
    meta.get_by_role("link").click()
    detail = page.get_by_test_id("request-detail")
    _eventually(page, lambda: detail.is_visible(), "the playground's request in the request log")
    expect(detail).to_contain_text(request_id)
    expect(detail).to_contain_text(NAMESPACE)
    expect(detail).to_contain_text("200")
    _shot(page, "05-request-detail")
    page.keyboard.press("Escape")
    page.goto(deployment.web + "/requests")
    expect(page.get_by_role("row", name=re.compile(NAMESPACE)).first).to_be_visible()
    _pick(page, "Namespace", NAMESPACE)
    # The chat, and the playground's GET /v1/models for the key's models.
    expect(page.get_by_role("row", name=re.compile(NAMESPACE))).to_have_count(2)
    expect(page.get_by_role("row", name="chat/completions")).to_have_count(1)
    _shot(page, "06-request-logs")

    # The overview counts them: the new namespace's requests, as many as the log has.
    page.goto(deployment.web + "/")
    _expect_counted(page, deployment, 2)
    assert (
        int(page.get_by_test_id("stat-requests").locator(".ant-statistic-content").inner_text())
        >= 2
    )

    # More traffic for the charts, then every page.
    with httpx.Client(
        base_url=deployment.gateway, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        for i in range(24):
            model = ("demo-chat", "mock-claude-haiku", "mock-gpt-4o")[i % 3]
            client.post(
                "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": f"hi {i}"}]},
            )
        for _ in range(2):
            assert (
                client.post(
                    "/v1/chat/completions", json={"model": "no-such-model", "messages": []}
                ).status_code
                >= 400
            )
    page.goto(deployment.web + "/")
    _expect_counted(page, deployment, 28)
    _backfill_history(deployment)
    page.reload()
    expect(page.get_by_test_id("chart-rps").locator(".recharts-surface")).to_be_visible()
    _for_docs(_shot(page, "07-overview"), "dashboard-overview.png")
    for path, name, heading in (
        ("/providers", "08-providers", "Providers"),
        ("/models", "09-models", "Models & routes"),
        ("/prices", "10-prices", "Prices"),
        ("/usage", "11-usage", "Usage"),
        ("/users", "12-users", "Admin users"),
    ):
        page.goto(deployment.web + path)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        _shot(page, name)
    # A provider's credential is write-only: the page shows that one is set, never its value.
    secret = "sk-upstream-secret-0123456789"
    patched = deployment.api("PATCH", "/api/v1/providers/mock", json={"api_key": secret})
    assert patched.status_code == 200, patched.text
    page.goto(deployment.web + "/providers")
    expect(
        page.get_by_role("row", name=re.compile(r"^mock openai-compatible")).get_by_text(
            "set", exact=True
        )
    ).to_be_visible()
    page.get_by_role("row", name=re.compile(r"^mock openai-compatible")).get_by_role(
        "button", name="Edit"
    ).click()
    expect(page.get_by_text("A key is set.")).to_be_visible()
    assert secret not in page.content()
    page.keyboard.press("Escape")
    # The models page shows each target's live state.
    page.goto(deployment.web + "/models")
    page.get_by_role("row", name=re.compile("mock-gpt-4o-mini")).get_by_role("button").first.click()
    expect(page.get_by_text("circuit closed").first).to_be_visible()
    _shot(page, "09-models-live")

    # Versions: the key's creation as a diff, then a rollback to before it (a new version).
    page.goto(deployment.web + "/versions")
    versions = deployment.api("GET", "/api/v1/versions", params={"limit": 50}).json()["items"]
    head = versions[0]["version"]
    created = next(
        v["version"] for v in versions if v["action"] == f"create key {NAMESPACE}/{KEY_NAME}"
    )
    page.get_by_role("row", name=re.compile(rf"^{created}\b")).get_by_role(
        "button", name="Diff"
    ).click()
    expect(page.get_by_test_id("diff-summary")).to_contain_text("added: 1")
    expect(page.locator(".ant-card", has_text="Changes from version")).to_contain_text(
        f'"name":"{KEY_NAME}"'
    )
    _shot(page, "13-versions-diff")
    page.get_by_role("row", name=re.compile(rf"^{created - 1}\b")).get_by_role(
        "button", name="Roll back"
    ).click()
    page.get_by_role("button", name="Yes").click()
    expect(page.get_by_text(f"rollback to {created - 1}")).to_be_visible()
    after = deployment.api("GET", "/api/v1/versions", params={"limit": 1}).json()["items"][0]
    assert after["version"] == head + 1 and after["rolled_back_from"] == created - 1
    assert (
        deployment.api("GET", f"/api/v1/namespaces/{NAMESPACE}/keys/{KEY_NAME}").status_code == 404
    )
    _shot(page, "14-versions-rolled-back")

    assert page.foreign_requests == []  # type: ignore[attr-defined]  # nothing from a CDN
    page.context.close()


def test_a_viewer_sees_every_page_and_can_change_nothing(
    browser: Browser, deployment: Deployment
) -> None:
    page = _page(browser, deployment)
    _sign_in(page, deployment, "vic")
    expect(page.get_by_text("Read-only")).to_be_visible()
    expect(page.get_by_role("menuitem", name="Admin users")).to_have_count(0)
    checks = (
        ("/namespaces", "New namespace"),
        ("/keys/demo", "New key"),
        ("/providers", "New provider"),
        ("/models", "New model"),
        ("/prices", "New price"),
    )
    for path, button in checks:
        page.goto(deployment.web + path)
        expect(page.get_by_role("button", name=button)).to_be_disabled()
        rows = page.locator(".ant-table-row")
        expect(rows.first).to_be_visible()
        for label in ("Edit", "Revoke", "Rotate"):
            for candidate in page.get_by_role("button", name=label).all():
                expect(candidate).to_be_disabled()
        _shot(page, f"viewer{path.replace('/', '-')}")
    page.goto(deployment.web + "/versions")
    expect(page.get_by_role("button", name="Roll back").first).to_be_disabled()
    page.goto(deployment.web + "/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    _shot(page, "viewer-overview")
    # The API refuses a viewer's writes too, whatever the page shows (the session cookie only).
    for method, path, body in (
        ("POST", "/api/v1/namespaces", {"name": "viewer-was-here"}),
        ("POST", "/api/v1/namespaces/demo/keys", {"name": "viewer-key"}),
        ("POST", "/api/v1/namespaces/demo/keys/demo/revoke", None),
        ("DELETE", "/api/v1/models/demo-chat", None),
    ):
        status = page.evaluate(
            """async ([method, path, body]) => (await fetch(path, {
                method, headers: {"Content-Type": "application/json"},
                body: body === null ? undefined : JSON.stringify(body)})).status""",
            [method, path, body],
        )
        assert status == 403, (method, path, status)
    assert deployment.api("GET", "/api/v1/namespaces/viewer-was-here").status_code == 404
    page.context.close()


def test_the_chinese_translation_renders(browser: Browser, deployment: Deployment) -> None:
    page = _page(browser, deployment, locale="zh-CN")  # the browser's language is the default
    page.goto(deployment.web + "/")
    expect(page.get_by_role("heading", name="登录 aigw")).to_be_visible()
    _shot(page, "zh-sign-in")
    _sign_in(page, deployment, "ada", labels=("用户名", "密码", "登录"))
    expect(page.get_by_role("heading", name="概览")).to_be_visible()
    for label in ("命名空间", "API 密钥", "请求日志", "配置版本", "调试台"):
        expect(page.get_by_role("menuitem", name=label)).to_be_visible()
    expect(page.get_by_text("每秒请求数")).to_be_visible()
    _shot(page, "zh-overview")
    page.get_by_role("menuitem", name="API 密钥").click()
    expect(page.get_by_role("button", name="新建密钥")).to_be_visible()
    expect(page.get_by_role("columnheader", name="过期时间")).to_be_visible()
    _shot(page, "zh-keys")
    # Switch to English in the header; the choice sticks over the browser's language.
    page.get_by_label("Language / 语言").click()
    page.locator('.ant-select-item-option[title="English"]').click()
    expect(page.get_by_role("button", name="New key")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="New key")).to_be_visible()
    page.context.close()
