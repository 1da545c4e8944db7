"""``synckairos/pages.py`` and its package data, without a browser.

The browser suite (``tests/browser/*.test.js``, run by ``tests/browser/run.sh``)
drives the pages in headless Chromium; these checks are fast and keep the
copies the server ships from drifting away from their sources.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from synckairos import pages

ROOT = Path(__file__).resolve().parents[2]
STATIC = pages.STATIC_DIR
CLIENT_SRC = ROOT / "clients" / "js" / "src"
SWAGGER = STATIC / "vendor" / "swagger-ui"
BROWSER_TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def http() -> TestClient:
    return TestClient(Starlette(routes=pages.routes()))


def test_the_served_client_is_clients_js_src() -> None:
    """``static/client`` links to the client's sources (one copy; a wheel holds the files)."""
    link = STATIC / "client"
    assert link.is_symlink(), "static/client must link to clients/js/src (scripts/vendor-assets.sh)"
    assert link.resolve() == CLIENT_SRC.resolve()
    assert sorted(p.name for p in link.glob("*.js")) == sorted(
        p.name for p in CLIENT_SRC.glob("*.js")
    )


def test_swagger_ui_copy_is_the_pinned_version() -> None:
    package = json.loads((BROWSER_TESTS / "package.json").read_text())
    pinned = package["devDependencies"]["swagger-ui-dist"]
    assert (SWAGGER / "VERSION").read_text().strip() == pinned
    dist = BROWSER_TESTS / "node_modules" / "swagger-ui-dist"
    if (dist / "package.json").exists():  # installed by tests/browser/install.sh
        installed = json.loads((dist / "package.json").read_text())["version"]
        assert installed == pinned
        for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
            source = re.sub(
                rb"(?m)^/[*/]# sourceMappingURL=.*(?:\n|\Z)", b"", (dist / name).read_bytes()
            )
            assert (SWAGGER / name).read_bytes() == source, (
                f"run bash scripts/vendor-assets.sh ({name})"
            )


def test_every_asset_a_page_references_is_shipped() -> None:
    pages_html = [STATIC / "inspector" / "index.html", STATIC / "docs" / "index.html"]
    for page in pages_html:
        refs = re.findall(r'(?:src|href)="(static/[^"]+)"', page.read_text())
        assert refs, page
        for ref in refs:
            assert (STATIC.parent / ref).is_file(), f"{page.name}: {ref}"
    script = (STATIC / "inspector" / "inspector.js").read_text()
    for ref in re.findall(r"from '(\.\./[^']+)'", script):
        assert (STATIC / "inspector" / ref).resolve().is_file(), ref


def test_package_data_ships_every_static_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["synckairos"]
    package = STATIC.parent
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    files = {p for p in STATIC.rglob("*") if p.is_file()}
    assert files - shipped == set()


@pytest.mark.parametrize("path", ["/inspector", "/docs"])
def test_pages_are_html_with_a_same_origin_policy(http: TestClient, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == pages.PAGE_CSP
    assert "default-src 'self'" in pages.PAGE_CSP
    assert "https:" not in pages.PAGE_CSP
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/static/client/index.js", "text/javascript"),
        ("/static/inspector/inspector.js", "text/javascript"),
        ("/static/inspector/inspector.css", "text/css"),
        ("/static/docs/docs.js", "text/javascript"),
        ("/static/vendor/swagger-ui/swagger-ui-bundle.js", "text/javascript"),
        ("/static/vendor/swagger-ui/swagger-ui.css", "text/css"),
    ],
)
def test_assets_are_served_with_their_media_type(
    http: TestClient, path: str, media_type: str
) -> None:
    response = http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    assert http.get(path, headers={"If-None-Match": response.headers["etag"]}).status_code == 304


@pytest.mark.parametrize(
    "path", ["/static/../pages.py", "/static/%2e%2e/pages.py", "/static/nope.js", "/static/"]
)
def test_nothing_outside_the_assets_is_served(http: TestClient, path: str) -> None:
    assert http.get(path).status_code == 404


def test_the_app_serves_the_pages(client: TestClient) -> None:
    assert client.get("/inspector").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/static/client/live.js").status_code == 200
