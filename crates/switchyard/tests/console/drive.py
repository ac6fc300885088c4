"""Drives the web console in a real headless Chromium, as a person would, against a real hub.

Run by the end-to-end test `console::the_console_in_a_real_browser`, which starts the hub, makes
the organization, its keys, a receiver and an executor, and passes them in the environment:
SY_URL, SY_ORG, SY_ADMIN, SY_VIEWER, SY_ENDPOINT, SY_SHOTS (where screenshots go),
SY_CHROMIUM (the browser binary). Any failed expectation raises, and the exit status says so.
"""

import json
import os
import sys
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

URL = os.environ["SY_URL"]
ORG = os.environ["SY_ORG"]
ADMIN = os.environ["SY_ADMIN"]
VIEWER = os.environ["SY_VIEWER"]
ENDPOINT = os.environ["SY_ENDPOINT"]
SHOTS = os.environ["SY_SHOTS"]
CHROMIUM = os.environ.get("SY_CHROMIUM", "/usr/bin/chromium")

# Markup an attacker puts into an event: it must show as text and never run.
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def publish(event):
    req = urllib.request.Request(
        f"{URL}/v1/orgs/{ORG}/events",
        data=json.dumps(event).encode(),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def sign_in(page, key):
    page.goto(f"{URL}/console")
    page.fill("#signin input[name=key]", key)
    page.click("#signin button[type=submit]")
    expect(page.locator("#who")).to_contain_text(ORG)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))

        # A wrong key is refused with a clear message and nothing is kept.
        page.goto(f"{URL}/console")
        shot(page, "01-sign-in")
        # Signed out, there is nothing to sign out of: the header and its button are hidden.
        expect(page.locator("#signout")).to_be_hidden()
        page.fill("#signin input[name=key]", "sy_not_a_real_key")
        page.click("#signin button[type=submit]")
        expect(page.locator("#flash")).to_contain_text("does not know this key")

        sign_in(page, ADMIN)
        expect(page.locator("#tail-state")).to_contain_text("live")

        # An event published through the API appears in the live tail, hostile markup as text.
        published = publish({
            "id": "console-evt-1",
            "type": "TicketCreated",
            "entity": {"type": "Ticket", "id": HOSTILE},
            "data": {"ticketId": 7, "subject": HOSTILE},
        })
        assert published["deliveries"] == 1, published
        row = page.locator('#events tr[data-id="console-evt-1"]')
        expect(row).to_be_visible(timeout=10_000)
        expect(row).to_contain_text(HOSTILE)
        shot(page, "02-events-live-tail")

        # The filters: a pattern that does not match hides it; one that does shows it.
        page.fill("#event-filters input[name=type]", "Profile*")
        page.click("#event-filters button[type=submit]")
        expect(page.locator('#events tr[data-id="console-evt-1"]')).to_have_count(0)
        page.fill("#event-filters input[name=type]", "Ticket*")
        page.click("#event-filters button[type=submit]")
        expect(page.locator('#events tr[data-id="console-evt-1"]')).to_have_count(1)

        # Its trace: the payload, the delivery and its failed first attempt (the receiver
        # answered 500; the next try is an hour away).
        page.click('#events tr[data-id="console-evt-1"] a')
        expect(page.locator("h1")).to_contain_text("TicketCreated")
        expect(page.locator("pre.json").first).to_contain_text('"ticketId": 7')
        delivery = page.locator(".card.delivery")
        expect(delivery.locator(".badge")).to_have_text("pending")
        expect(delivery).to_contain_text("500")
        shot(page, "03-event-trace")

        # Retry it by hand: the receiver now answers 200 and the trace shows it delivered.
        delivery.locator("button").click()
        expect(page.locator(".card.delivery .badge")).to_have_text("delivered", timeout=10_000)
        expect(page.locator(".card.delivery tbody tr")).to_have_count(2)
        # Each attempt's headers as sent, the signature redacted.
        expect(page.locator(".card.delivery")).to_contain_text('"webhook-signature": "v1,[redacted]"')
        shot(page, "04-event-trace-retried")

        # The endpoint: its health after one failure and one success.
        page.goto(f"{URL}/console/#/endpoints/{ENDPOINT}")
        expect(page.locator("#health")).to_contain_text("50.0 %")
        shot(page, "05-endpoint")

        # An executor preview: run with this input, see output, logs and duration.
        page.goto(f"{URL}/console/#/executors/double")
        page.fill("#run-executor textarea", '{"n": 21}')
        page.click("#run-executor button[type=submit]")
        result = page.locator("#run-result")
        expect(result).to_contain_text('"n": 42', timeout=20_000)
        expect(result).to_contain_text("doubling")
        expect(result.locator(".badge")).to_have_text("ok")
        shot(page, "06-executor-preview")

        # A new version from the editor, listed with the first.
        editor = page.locator("#edit-executor textarea")
        editor.fill("function main(input, sdk) {\n  sdk.log('tripling');\n  return { n: input.n * 3 };\n}\n")
        page.click("#edit-executor button[type=submit]")
        expect(page.locator("h1")).to_contain_text("v2")
        expect(page.locator("table")).to_contain_text("v1")

        # Keys: a new viewer key is shown once.
        page.goto(f"{URL}/console/#/keys")
        page.select_option("#new-key select[name=role]", "viewer")
        page.click("#new-key button[type=submit]")
        expect(page.locator("#new-key-value")).to_contain_text("sy_")
        shot(page, "07-keys")

        for name in ["hooks", "schedules", "secrets"]:
            page.goto(f"{URL}/console/#/{name}")
            expect(page.locator("h1")).to_be_visible()
            shot(page, f"08-{name}")

        # A viewer sees the same trace without the buttons that change anything, and the
        # key stays in the tab: a new tab (a new session) is signed out.
        page.click("#signout")
        sign_in(page, VIEWER)
        page.goto(f"{URL}/console/#/events/console-evt-1")
        expect(page.locator(".card.delivery .badge")).to_have_text("delivered")
        expect(page.locator(".card.delivery button")).to_have_count(0)
        page.goto(f"{URL}/console/#/endpoints")
        expect(page.locator("#new-endpoint")).to_have_count(0)
        other = browser.new_context().new_page()
        other.goto(f"{URL}/console")
        expect(other.locator("#signin")).to_be_visible()

        pwned = page.evaluate("window.__pwned")
        assert pwned is None, f"markup in an event ran in the console ({pwned})"
        assert not errors, f"the page threw: {errors}"
        browser.close()
    print("console: every step passed")


if __name__ == "__main__":
    started = time.time()
    try:
        main()
    except Exception as e:  # noqa: BLE001 — any failure is the test's failure
        print(f"console test failed after {time.time() - started:.1f}s: {e!r}", file=sys.stderr)
        sys.exit(1)
