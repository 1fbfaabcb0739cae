"""The self-service web page in a real headless Chromium (Debian's chromium + chromium-driver through
Selenium; nothing is downloaded) against the local stack in JWT mode: the browser signs in through
devhost's Easy Auth stand-in and the local issuer's dev-user picker, then uses the page as a person
would. The NSG is checked in the emulator through azure-mgmt-network, not through the page.

Screenshots go to test-results/screenshots/ (gitignored; CI keeps the folder as an artifact).
`make browser` installs chromium and chromium-driver when they are missing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import (
    Permission,
    RoleAssignmentCreateParameters,
    RoleDefinition,
)
from azure.mgmt.network import NetworkManagementClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from localrig.appclient import AppClient
from localrig.devusers import ADMIN, ALICE, BOB, CAROL, EVE, DevUser
from localrig.emulator_client import EmulatorClient
from localrig.estates.roles import (
    OWNER_ROLE,
    READER_ROLE,
    REQUESTER_ACTIONS,
    assign_role,
    define_role,
    grant_roles,
)
from localrig.estates.sample import Estate
from localrig.estates.snapshot import wait_for
from localrig.processes import PROJECT_ROOT
from localrig.stack import Stack, start_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = PROJECT_ROOT / "test-results" / "screenshots"
WAIT_SECONDS = 30

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"{CHROMIUM} and {CHROMEDRIVER} are needed (Debian chromium, chromium-driver): `make browser`",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 - only once the browser is known to be there
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

POLICY_READ = "Microsoft.Security/locations/jitNetworkAccessPolicies/read"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(tmp_path_factory.mktemp("web-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def estate(stack: Stack) -> Estate:
    """The demo's estate; admin owns it and wrote its JIT policy; alice may initiate on its VMs and
    read its policy (the page lists the VMs of the policies a person may read)."""
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
    estate = Estate(arm.subscription_id, f"rg-{uuid.uuid4().hex[:8]}")
    arm.seed(estate.resources())
    admin, alice = grant_roles(arm, estate)
    auth = arm.client(AuthorizationManagementClient)
    sub = f"/subscriptions/{arm.subscription_id}"
    reader = str(uuid.uuid4())
    auth.role_definitions.create_or_update(
        sub,
        reader,
        RoleDefinition(
            role_name=f"JIT policy reader {reader[:8]}",
            permissions=[Permission(actions=[POLICY_READ])],
            assignable_scopes=[sub],
        ),
    )
    auth.role_assignments.create(
        f"{sub}/resourceGroups/{estate.resource_group}",
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"{sub}/providers/Microsoft.Authorization/roleDefinitions/{reader}",
            principal_id=alice.object_id,
            principal_type="User",
        ),
    )
    AppClient(stack.api_url, admin, stack.headers_for).put_policy(estate, estate.policy_body())
    return estate


def _issuer_pin(stack: Stack) -> str:
    """The issuer certificate's SPKI hash: Chromium trusts that one certificate (the emulator's CA
    signed it) and no other, instead of ignoring certificate errors everywhere."""
    assert stack.issuer is not None
    pem = ssl.get_server_certificate(("127.0.0.1", stack.issuer.port))
    public_key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def browser(stack: Stack, tmp_path: Path) -> Iterator[Callable[[str], WebDriver]]:
    """A fresh headless Chromium per call (its own profile: its own cookies), quit at the end."""
    drivers: list[WebDriver] = []

    def launch(size: str = "1280,900") -> WebDriver:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / f'profile-{len(drivers)}'}",
            f"--ignore-certificate-errors-spki-list={_issuer_pin(stack)}",
            f"--window-size={size}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        drivers.append(driver)
        return driver

    yield launch
    for driver in drivers:
        driver.quit()


def screenshot(driver: WebDriver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    # A list the page has just drawn again leaves stale elements behind: look again.
    return WebDriverWait(
        driver, WAIT_SECONDS, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition, message=what)


def visible(driver: WebDriver, css: str) -> Any:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found and found[0].is_displayed() else False


def sign_in(driver: WebDriver, stack: Stack, user: DevUser) -> None:
    """As a person does: open the page, press Sign in, pick the dev user on the issuer's page."""
    driver.get(stack.page_url)
    until(driver, lambda d: visible(d, "#signin-link"), "the Sign in link")
    driver.find_element(By.ID, "signin-link").click()
    until(driver, lambda d: visible(d, f"button[value='{user.name}']"), "the issuer's dev-user picker")
    driver.find_element(By.CSS_SELECTOR, f"button[value='{user.name}']").click()
    until(driver, lambda d: d.current_url.startswith(stack.page_url), "back on the page")
    until(driver, lambda d: user.username in d.find_element(By.ID, "who").text, "signed in as the user")
    until(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"), "the VMs read")


def allow_rules(arm: EmulatorClient, estate: Estate, port: int) -> list[str]:
    """Our Allow rules for `port` on vm-web's NIC NSG, read through the SDK."""
    network = arm.client(NetworkManagementClient)
    nsg = network.network_security_groups.get(estate.resource_group, "nsg-web-nic")
    return [
        rule.name
        for rule in nsg.security_rules or []
        if (rule.name or "").startswith(f"Portcullis-JIT-Allow-{port}-")
    ]


def test_requester_opens_ssh_copies_the_line_and_revokes(
    stack: Stack, estate: Estate, browser: Callable[..., WebDriver]
) -> None:
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
    driver = browser()
    sign_in(driver, stack, ALICE)
    card = until(
        driver, lambda d: visible(d, f"li.vm[data-vm='{estate.vm_id(estate.vm_web)}']"), "vm-web listed"
    )
    assert "22/TCP" in card.text and "3389/TCP" in card.text and "at most 3 h" in card.text
    card.find_element(By.CSS_SELECTOR, "button.primary").click()

    form = until(driver, lambda d: visible(d, "#request-form"), "the request form")
    assert driver.find_element(By.ID, "port-22").is_selected()
    if driver.find_element(By.ID, "port-3389").is_selected():
        driver.find_element(By.ID, "port-3389").click()
    # The source defaults to "my IP" as GET /api/me reports it (devhost appends the socket peer).
    assert driver.find_element(By.ID, "source").get_attribute("value") == "127.0.0.1"
    driver.find_element(By.ID, "justification").send_keys("browser test: check the disk")
    driver.find_element(By.ID, "ticket").send_keys("INC-11")
    driver.find_element(By.ID, "ssh-user").send_keys("azureuser")  # remembered in this browser only
    screenshot(driver, "requester-form")
    form.find_element(By.ID, "request-submit").click()

    until(
        driver, lambda d: d.find_element(By.ID, "progress").get_attribute("data-state") == "open", "port open"
    )
    line = driver.find_element(By.CSS_SELECTOR, "#progress code.line[data-port='22']").text
    assert line == f"ssh -p 22 azureuser@{estate.web_public_ip}"
    request_id = driver.find_element(By.ID, "progress").get_attribute("data-request")
    assert allow_rules(arm, estate, 22), "the page says open, so the NSG has our Allow rule"
    screenshot(driver, "requester-open")

    # The copy button puts exactly that line on the clipboard.
    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": stack.host_url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    copy = driver.find_element(By.CSS_SELECTOR, "#progress .connect button.copy")
    copy.click()
    until(driver, lambda d: copy.get_attribute("data-copied"), "the copy button pressed")
    assert copy.get_attribute("data-copied") == line
    clipboard = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, (e) => done('error: ' + e.message));"
    )
    assert clipboard == line

    # My requests: time left, then revoke with the keyboard's Enter on the focused button.
    driver.find_element(By.CSS_SELECTOR, "nav button[data-view='mine']").click()
    mine = until(
        driver, lambda d: visible(d, f"li.request[data-request='{request_id}']"), "the request listed"
    )
    assert "left" in mine.find_element(By.CSS_SELECTOR, ".left").text
    # My requests come from one call for every VM (GET /api/requests?requester=me), never one per VM.
    called = driver.execute_script(
        "return performance.getEntriesByType('resource').map((entry) => entry.name);"
    )
    assert any("/api/requests?requester=me" in url for url in called), called
    assert not [url for url in called if "/api/grants?vm=" in url], called
    screenshot(driver, "requester-mine")
    revoke = mine.find_element(By.CSS_SELECTOR, "button.danger")
    driver.execute_script("arguments[0].focus()", revoke)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    until(driver, lambda d: "Revoked" in d.find_element(By.ID, "notice").text, "the revoke confirmed")
    wait_for(lambda: not allow_rules(arm, estate, 22), 30, "the NSG Allow rule removed")
    until(
        driver,
        lambda d: not d.find_elements(By.CSS_SELECTOR, f"li.request.active[data-request='{request_id}']"),
        "the request no longer active on the page",
    )
    screenshot(driver, "requester-revoked")


def test_user_without_rights_sees_no_vms_and_why(
    stack: Stack, estate: Estate, browser: Callable[..., WebDriver]
) -> None:
    driver = browser("390,844")  # a phone's width
    sign_in(driver, stack, EVE)
    empty = until(driver, lambda d: visible(d, "#vms-empty"), "the no-VMs message")
    assert "You have no VMs to request" in empty.text and "initiate/action" in empty.text
    assert not driver.find_elements(By.CSS_SELECTOR, "li.vm")
    assert not driver.find_element(By.CSS_SELECTOR, "nav button[data-view='admin']").is_displayed()
    # Nothing wider than the screen: the page works at a phone's width.
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(driver, "no-rights-phone")


def test_signed_out_page_offers_sign_in_and_sign_out_ends_the_session(
    stack: Stack, estate: Estate, browser: Callable[..., WebDriver]
) -> None:
    driver = browser()
    sign_in(driver, stack, ALICE)
    driver.find_element(By.LINK_TEXT, "Sign out").click()
    until(driver, lambda d: visible(d, "#signin-link"), "the Sign in link again")
    assert not driver.get_cookie("AppServiceAuthSession")


def test_behind_a_firewall_the_line_has_its_address_and_mapped_port_and_the_admin_sees_the_holder(
    stack: Stack, estate: Estate, browser: Callable[..., WebDriver]
) -> None:
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
    alice = browser()
    sign_in(alice, stack, ALICE)
    card = until(
        alice, lambda d: visible(d, f"li.vm[data-vm='{estate.vm_id(estate.vm_app)}']"), "vm-app listed"
    )
    card.find_element(By.CSS_SELECTOR, "button.primary").click()
    until(alice, lambda d: visible(d, "#request-form"), "the request form")
    alice.find_element(By.ID, "justification").send_keys("browser test behind the classic firewall")
    alice.find_element(By.ID, "request-submit").click()
    until(
        alice, lambda d: d.find_element(By.ID, "progress").get_attribute("data-state") == "open", "port open"
    )
    line = alice.find_element(By.CSS_SELECTOR, "#progress code.line[data-port='22']").text
    match = re.fullmatch(rf"ssh -p (\d+) <user>@{re.escape(estate.classic_fw_public_ip)}", line)
    assert match, line
    mapped = int(match[1])
    assert 50000 <= mapped <= 50999
    firewall = arm.client(NetworkManagementClient).azure_firewalls.get(
        estate.resource_group, estate.classic_firewall_id.rsplit("/", 1)[1]
    )
    dnat = [
        rule
        for collection in firewall.nat_rule_collections or []
        if collection.name == "Portcullis-JIT"
        for rule in collection.rules or []
    ]
    assert [rule.destination_ports for rule in dnat] == [[str(mapped)]]
    request_id = alice.find_element(By.ID, "progress").get_attribute("data-request")

    # The administrator sees who holds access now, and a policy edit the API refuses shows its field.
    admin = browser()
    sign_in(admin, stack, ADMIN)
    admin.find_element(By.CSS_SELECTOR, "nav button[data-view='admin']").click()
    # Wait for the row itself: the table may show before its rows are filled.
    until(
        admin,
        lambda d: (
            visible(d, "#holders")
            and any(
                "vm-app" in row.text and ALICE.username in row.text
                for row in d.find_elements(By.CSS_SELECTOR, "#holders tbody tr")
            )
        ),
        "alice's vm-app grant among who holds access",
    )
    # Who holds access is one call across every VM (GET /api/grants?active=true), never one per VM.
    called = admin.execute_script(
        "return performance.getEntriesByType('resource').map((entry) => entry.name);"
    )
    assert any(url.endswith("/api/grants?active=true") for url in called), called
    assert not [url for url in called if "/api/grants?vm=" in url], called
    until(admin, lambda d: visible(d, "#findings-empty") or visible(d, "#findings li"), "compliance findings")
    policy = until(admin, lambda d: visible(d, "li.policy"), "the policy")
    policy.find_element(By.XPATH, ".//button[text()='Edit']").click()
    editor = policy.find_element(By.CSS_SELECTOR, "textarea.json")
    document = json.loads(editor.get_attribute("value") or "{}")
    document["properties"]["virtualMachines"][0]["ports"][0]["maxRequestAccessDuration"] = "PT2000H"
    editor.clear()
    editor.send_keys(json.dumps(document))
    policy.find_element(By.XPATH, ".//button[text()='Save']").click()
    error = until(admin, lambda d: visible(d, "li.policy p.error"), "the API's refusal")
    assert "field: properties.virtualMachines[0].ports[0].maxRequestAccessDuration" in error.text, error.text
    screenshot(admin, "admin-view")

    AppClient(stack.api_url, ALICE, stack.headers_for).ok("DELETE", f"/requests/{request_id}")
    wait_for(lambda: not allow_rules_on(arm, estate, "nsg-app-nic"), 30, "vm-app's rules removed")


def allow_rules_on(arm: EmulatorClient, estate: Estate, nsg_name: str) -> list[str]:
    network = arm.client(NetworkManagementClient)
    nsg = network.network_security_groups.get(estate.resource_group, nsg_name)
    return [
        rule.name or ""
        for rule in nsg.security_rules or []
        if (rule.name or "").startswith("Portcullis-JIT-Allow-")
    ]


@pytest.fixture(scope="module")
def approval_estate(stack: Stack) -> Estate:
    """A resource group of its own whose policy needs bob's approval on vm-web (vm-app and vm-ops
    open at once): alice may initiate on its VMs and read it, bob may read it (an approver must be
    able to read the policy he decides), admin owns it and writes the policy."""
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
    rg = Estate(arm.subscription_id, f"rg-appr-{uuid.uuid4().hex[:8]}")
    arm.seed(rg.resources())
    auth = arm.client(AuthorizationManagementClient)
    role = str(uuid.uuid4())
    define_role(auth, arm.subscription_id, role, f"JIT requester {role[:8]}", REQUESTER_ACTIONS)
    assign_role(auth, arm.subscription_id, rg.scope, OWNER_ROLE, ADMIN.object_id)
    for vm in (rg.vm_web, rg.vm_app, rg.vm_ops):
        assign_role(auth, arm.subscription_id, rg.vm_id(vm), role, ALICE.object_id)
    for user in (ALICE, BOB):
        assign_role(auth, arm.subscription_id, rg.scope, READER_ROLE, user.object_id)
    body = rg.policy_body()
    body["properties"]["virtualMachines"][0]["portcullis"] = {
        "approval": {
            "approvers": [BOB.object_id],
            "required": 1,
            "pendingTimeout": "PT1H",
            "breakGlass": True,
        }
    }
    AppClient(stack.api_url, ADMIN, stack.headers_for).put_policy(rg, body)
    return rg


def request_in_page(driver: WebDriver, vm_id: str, why: str) -> str:
    """Alice's steps: Request access on the VM's card, say why, submit; the request id the page follows."""
    driver.find_element(By.CSS_SELECTOR, "nav button[data-view='request']").click()
    card = until(driver, lambda d: visible(d, f"li.vm[data-vm='{vm_id}']"), f"{vm_id} listed")
    before = driver.find_element(By.ID, "progress").get_attribute("data-request")
    card.find_element(By.CSS_SELECTOR, "button.primary").click()
    until(driver, lambda d: visible(d, "#request-form"), "the request form")
    assert driver.find_element(By.ID, "justification").get_attribute("value") == "", "a fresh form"
    for box in driver.find_elements(By.ID, "port-3389"):
        if box.is_selected():
            box.click()
    driver.find_element(By.ID, "justification").send_keys(why)
    driver.find_element(By.ID, "request-submit").click()
    until(
        driver,
        lambda d: d.find_element(By.ID, "progress").get_attribute("data-request") not in (None, "", before),
        "request made",
    )
    return driver.find_element(By.ID, "progress").get_attribute("data-request") or ""


def inbox_card(driver: WebDriver, request_id: str) -> Any:
    """Bob's inbox, read afresh (the tab reloads it), and the card of `request_id` in it."""
    driver.find_element(By.CSS_SELECTOR, "nav button[data-view='approvals']").click()
    selector = f"#approvals li.approval-request[data-request='{request_id}']"

    def found(d: WebDriver) -> Any:
        card = visible(d, selector)
        if not card:
            d.find_element(By.CSS_SELECTOR, "nav button[data-view='approvals']").click()
        return card

    return until(driver, found, f"request {request_id} in bob's inbox")


def test_approver_inbox_approve_and_deny_and_requester_extends(
    stack: Stack, approval_estate: Estate, browser: Callable[..., WebDriver]
) -> None:
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
    rg = approval_estate
    alice = browser()
    sign_in(alice, stack, ALICE)
    bob = browser()
    sign_in(bob, stack, BOB)
    assert bob.find_element(By.CSS_SELECTOR, "nav button[data-view='approvals']").is_displayed()

    # 1. Denied: alice asks, the page says it waits for bob; bob denies; alice's page says Denied.
    denied = request_in_page(alice, rg.vm_id(rg.vm_web), "browser test: to be denied")
    until(
        alice, lambda d: d.find_element(By.ID, "progress").get_attribute("data-state") == "pending", "pending"
    )
    assert "Waiting for approval" in alice.find_element(By.ID, "progress-status").text
    approval = alice.find_element(By.CSS_SELECTOR, "#progress .approval").text
    assert BOB.object_id in approval and "1 approval" in approval and "lapses" in approval, approval
    card = inbox_card(bob, denied)
    assert ALICE.username in card.text and "to be denied" in card.text and "vm-web 22" in card.text
    card.find_element(By.CSS_SELECTOR, "input.comment").send_keys("not during the freeze")
    card.find_element(By.XPATH, ".//button[text()='Deny']").click()
    until(bob, lambda d: "denied" in d.find_element(By.ID, "notice").text, "the denial confirmed")
    until(
        alice, lambda d: d.find_element(By.ID, "progress").get_attribute("data-state") == "closed", "closed"
    )
    assert "Denied" in alice.find_element(By.ID, "progress").text
    assert "not during the freeze" in alice.find_element(By.CSS_SELECTOR, "#progress .approval").text
    assert not allow_rules_on(arm, rg, "nsg-web-nic"), "a denied request opens nothing"

    # 2. Approved: bob approves with a comment (keyboard: Enter on the focused button); it opens.
    approved = request_in_page(alice, rg.vm_id(rg.vm_web), "browser test: to be approved")
    until(
        alice, lambda d: d.find_element(By.ID, "progress").get_attribute("data-state") == "pending", "pending"
    )
    assert not allow_rules_on(arm, rg, "nsg-web-nic"), "nothing opens while pending"
    card = inbox_card(bob, approved)
    card.find_element(By.CSS_SELECTOR, "input.comment").send_keys("ok for INC-13")
    screenshot(bob, "approver-inbox")
    button = card.find_element(By.XPATH, ".//button[text()='Approve']")
    bob.execute_script("arguments[0].focus()", button)
    bob.switch_to.active_element.send_keys(Keys.ENTER)
    until(bob, lambda d: "approved" in d.find_element(By.ID, "notice").text, "the approval confirmed")
    until(bob, lambda d: visible(d, "#approvals-empty"), "the inbox empty again")
    until(alice, lambda d: d.find_element(By.ID, "progress").get_attribute("data-state") == "open", "open")
    assert "Initiated" in alice.find_element(By.ID, "progress-ports").text
    assert "ok for INC-13" in alice.find_element(By.CSS_SELECTOR, "#progress .approval").text
    wait_for(lambda: allow_rules_on(arm, rg, "nsg-web-nic"), 30, "the NSG Allow rule once approved")
    screenshot(alice, "requester-approved")

    # 3. Extend it: on this VM the extension waits for bob, who finds it in his inbox and approves.
    before = extend_in_page(alice, approved)
    until(alice, lambda d: "waits for approval" in d.find_element(By.ID, "notice").text, "extension asked")
    card = inbox_card(bob, approved)
    assert "Extension to" in card.text, card.text
    card.find_element(By.XPATH, ".//button[text()='Approve']").click()
    until(bob, lambda d: "approved" in d.find_element(By.ID, "notice").text, "the extension approved")
    assert 3500 <= end_moved(alice, approved, before) <= 3700
    assert allow_rules_on(arm, rg, "nsg-web-nic"), "the rule stayed through the extension"

    # 4. Extend an open request on a VM without approval (vm-ops): the new end time shows at once.
    extended = request_in_page(alice, rg.vm_id(rg.vm_ops), "browser test: extend me")
    until(alice, lambda d: d.find_element(By.ID, "progress").get_attribute("data-state") == "open", "open")
    before = extend_in_page(alice, extended)
    until(alice, lambda d: "Extended" in d.find_element(By.ID, "notice").text, "the extension confirmed")
    assert 3500 <= end_moved(alice, extended, before) <= 3700
    screenshot(alice, "requester-extended")
    AppClient(stack.api_url, ALICE, stack.headers_for).ok("DELETE", f"/requests/{extended}")
    AppClient(stack.api_url, ALICE, stack.headers_for).ok("DELETE", f"/requests/{approved}")

    # 5. Break-glass, in the page at a phone's width: offered only where the policy allows it (not on
    # vm-ops); checked with the keyboard, it needs the reason before anything is sent; it opens vm-web
    # at once and the progress says it awaits review. Bob's inbox offers it; he reviews it (keyboard).
    alice.set_window_size(390, 844)
    alice.find_element(By.CSS_SELECTOR, "nav button[data-view='request']").click()
    until(alice, lambda d: visible(d, f"li.vm[data-vm='{rg.vm_id(rg.vm_ops)}']"), "vm-ops listed")
    alice.find_element(By.CSS_SELECTOR, f"li.vm[data-vm='{rg.vm_id(rg.vm_ops)}'] button.primary").click()
    until(alice, lambda d: visible(d, "#request-form"), "the request form")
    assert not alice.find_element(By.ID, "break-glass-field").is_displayed(), "vm-ops has no break-glass"
    alice.find_element(By.CSS_SELECTOR, f"li.vm[data-vm='{rg.vm_id(rg.vm_web)}'] button.primary").click()
    until(alice, lambda d: visible(d, "#break-glass-field"), "the break-glass option on vm-web")
    before = alice.find_element(By.ID, "progress").get_attribute("data-request")
    alice.execute_script("arguments[0].focus()", alice.find_element(By.ID, "break-glass"))
    alice.switch_to.active_element.send_keys(Keys.SPACE)
    assert alice.find_element(By.ID, "break-glass").is_selected()
    assert alice.find_element(By.ID, "request-submit").text == "Open now (break-glass)"
    alice.find_element(By.ID, "justification").send_keys("down")
    alice.find_element(By.ID, "request-submit").click()
    hint = until(alice, lambda d: visible(d, "#justification-error"), "the reason asked for")
    assert "at least 10 characters" in hint.text
    screenshot(alice, "requester-break-glass-form")
    assert alice.find_element(By.ID, "progress").get_attribute("data-request") == before, "nothing sent"
    alice.find_element(By.ID, "justification").send_keys(": browser test, production is down")
    alice.find_element(By.ID, "request-submit").click()
    until(
        alice,
        lambda d: (
            d.find_element(By.ID, "progress").get_attribute("data-break-glass") == "awaiting-review"
            and d.find_element(By.ID, "progress").get_attribute("data-state") == "open"
        ),
        "break-glass open at once, awaiting review",
    )
    note = alice.find_element(By.ID, "progress-break-glass").text
    assert "break-glass" in note and "awaits an approver's review" in note and BOB.object_id in note, note
    assert alice.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(alice, "requester-break-glass-phone")
    glass = alice.find_element(By.ID, "progress").get_attribute("data-request") or ""
    assert glass not in ("", before)
    selector = f"#approvals li.review-request[data-request='{glass}']"

    def review_card(d: WebDriver) -> Any:
        card = visible(d, selector)
        if not card:
            d.find_element(By.CSS_SELECTOR, "nav button[data-view='approvals']").click()
        return card

    bob.find_element(By.CSS_SELECTOR, "nav button[data-view='approvals']").click()
    card = until(bob, review_card, "the break-glass request awaiting bob's review")
    assert "Break-glass" in card.text and "production is down" in card.text and "vm-web 22" in card.text
    card.find_element(By.CSS_SELECTOR, "input.comment").send_keys("checked the session log")
    screenshot(bob, "approver-review")
    button = card.find_element(By.XPATH, ".//button[text()='Review']")
    bob.execute_script("arguments[0].focus()", button)
    bob.switch_to.active_element.send_keys(Keys.ENTER)
    until(bob, lambda d: "reviewed" in d.find_element(By.ID, "notice").text, "the review confirmed")
    until(
        bob,
        lambda d: not d.find_elements(By.CSS_SELECTOR, selector),
        "the reviewed request gone from the inbox",
    )
    shown = AppClient(stack.api_url, ALICE, stack.headers_for).request_status(glass)
    assert shown["approval"]["review"]["comment"] == "checked the session log"
    AppClient(stack.api_url, ALICE, stack.headers_for).ok("DELETE", f"/requests/{glass}")


def extend_in_page(driver: WebDriver, request_id: str) -> str:
    """My requests, the open request's Extend 1 h button; the end time it showed before."""
    driver.find_element(By.CSS_SELECTOR, "nav button[data-view='mine']").click()

    def press(d: WebDriver) -> str | bool:
        card = visible(d, f"li.request.active[data-request='{request_id}']")
        if not card:
            return False
        before = card.find_element(By.CSS_SELECTOR, ".left").get_attribute("data-end") or ""
        card.find_element(By.XPATH, ".//button[starts-with(text(), 'Extend')]").click()
        return before

    return str(until(driver, press, "the open request's Extend button pressed"))


def end_moved(driver: WebDriver, request_id: str, before: str) -> float:
    """Seconds the end time shown in My requests moved from `before` (the tab reads the grants again)."""

    def new_end(d: WebDriver) -> str | bool:
        d.find_element(By.CSS_SELECTOR, "nav button[data-view='mine']").click()
        cards = d.find_elements(By.CSS_SELECTOR, f"li.request.active[data-request='{request_id}'] .left")
        end = cards[0].get_attribute("data-end") if cards else ""
        return end if end and end != before else False

    after = until(driver, new_end, "the new end time shown")
    moved = datetime.fromisoformat(after.replace("Z", "+00:00")) - datetime.fromisoformat(
        before.replace("Z", "+00:00")
    )
    return moved.total_seconds()


def test_my_requests_offer_older_ones_when_there_are_more_than_a_page(
    stack: Stack, estate: Estate, browser: Callable[..., WebDriver]
) -> None:
    """Carol has 51 requests (closed ones, recorded through the store on Azurite): My requests shows
    the newest 50 and an "Older requests" button that reads the next page (the answer's nextLink)."""
    from datetime import UTC, timedelta

    from shared.grants import REQUESTER_PAGE_SIZE, RequestRecord, TableGrantStore, grant_id, new_request_id
    from shared.model import (
        Grant,
        PolicyRef,
        PortStatus,
        Principal,
        PrincipalSource,
        StatusReason,
        TransportProtocol,
        VmRef,
    )
    from shared.settings import load_settings

    store = TableGrantStore(load_settings(stack.env))
    carol = Principal(CAROL.object_id, CAROL.display_name, PrincipalSource.JWT)
    policy = PolicyRef(estate.subscription_id, estate.resource_group, estate.location, "default")
    vm = VmRef.parse(estate.vm_id(estate.vm_web), "vm")
    oldest = datetime.now(UTC) - timedelta(days=30)

    def record(n: int) -> None:
        request_id, start = new_request_id(), oldest + timedelta(minutes=n)
        grant = Grant(
            grant_id(request_id, 0), request_id, policy, vm, 22, TransportProtocol.TCP, ("203.0.113.9/32",),
            start, start + timedelta(minutes=5), carol, f"old request {n}", None,
            status=PortStatus.REVOKED, status_reason=StatusReason.EXPIRED,
        )  # fmt: skip
        store.create_request(RequestRecord(request_id, policy, carol, start, f"old {n}", None, "fp"), [grant])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(record, range(REQUESTER_PAGE_SIZE + 1)))
    driver = browser()
    sign_in(driver, stack, CAROL)
    driver.find_element(By.CSS_SELECTOR, "nav button[data-view='mine']").click()
    older = until(driver, lambda d: visible(d, "#mine-older"), "the Older requests button")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#mine li.request")) == REQUESTER_PAGE_SIZE
    older.click()
    until(
        driver,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#mine li.request")) == REQUESTER_PAGE_SIZE + 1,
        "the oldest request listed",
    )
    until(driver, lambda d: not visible(d, "#mine-older"), "no Older button once all are shown")
