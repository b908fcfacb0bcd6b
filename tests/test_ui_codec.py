"""The Web UI as `make run` sets it up: the dev server's UI decodes through the codec server
(`--ui-codec-endpoint` with the token in the path), so an officer opening a case sees its input;
Temporal itself holds only ciphertext. Headless Debian Chromium, driven by playwright."""

import os
import shutil
import time

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contract import search
from tests.codec_fixtures import free_port, start_codec_server
from tests.org_fixtures import data_converter
from tests.temporal_fixtures import BIN, signer

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
APPLICANT = "示例科技有限公司"  # the applicant's name in docs/examples/case-enterprise-opening.json


@pytest.fixture(scope="module")
def ui_codec(tmp_path_factory):
    """A codec server letting in the UI's origin; yields it and the UI's port."""
    ui_port = free_port()
    process, server = start_codec_server(
        tmp_path_factory.mktemp("ui-codec") / "codec.log", origins=f"http://127.0.0.1:{ui_port}"
    )
    try:
        yield server, ui_port
    finally:
        process.terminate()
        process.wait(timeout=10)


# Replaces tests/e2e_fixtures.py's dev_server for this module, so `hall` (worker.py, starter.py)
# runs against a dev server whose Web UI decodes through the codec server.
@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dev_server(ui_codec):
    codec, ui_port = ui_codec
    env = await WorkflowEnvironment.start_local(
        ip="127.0.0.1",
        data_converter=data_converter,
        interceptors=[signer()],
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=search.ALL,
        ui=True,
        ui_port=ui_port,
        dev_server_extra_args=["--ui-codec-endpoint", codec.ui_endpoint],
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def test_the_web_ui_shows_a_case_input_decoded_while_temporal_holds_it_encrypted(dev_server, hall, ui_codec):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium: `make setup` installs Debian's package")
        pytest.skip("no chromium (make setup installs it with apt-get)")
    from playwright.async_api import async_playwright, expect

    case_no = f"UI-{time.time_ns()}"
    started = hall("case", "start", "--file", "docs/examples/case-enterprise-opening.json", "--case-no", case_no)
    assert started.returncode == 0, started.stderr

    # Without the codec (what Temporal stores and any client without the key fetches): ciphertext.
    plain = Client(dev_server.client.service_client, namespace=dev_server.client.namespace)
    history = await plain.get_workflow_handle(f"case-{case_no}").fetch_history()
    (started_input,) = history.events[0].workflow_execution_started_event_attributes.input.payloads
    assert started_input.metadata["encoding"] == b"binary/encrypted"
    assert APPLICANT not in history.to_json()
    assert APPLICANT.encode() not in b"".join(e.SerializeToString() for e in history.events)

    # With it: the case's page in the Web UI shows the input as the window sent it.
    _, ui_port = ui_codec
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{ui_port}/namespaces/default/workflows/case-{case_no}")
            await expect(page.get_by_text(APPLICANT).first).to_be_visible(timeout=20_000)
            await expect(page.get_by_text(f'"case_no": "{case_no}"').first).to_be_visible()
        finally:
            await browser.close()
